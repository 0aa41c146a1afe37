"""PyTorch models of the BERT, GPT-2, RoBERTa and Llama (Llama, Mistral, Qwen2) families, key-for-key
compatible with transformers.

    from bridge.models import BertForMaskedLM, get_model_type
    model = BertForMaskedLM.from_pretrained("bert-base-cased")
    get_model_type("bert")["formaskedlm"] is BertForMaskedLM

A task name is the class name without the family prefix, lowercased ("model", "formaskedlm",
"lmheadmodel", ...), as in Transformers.jl's `hgf"bert-base-cased:formaskedlm"`.
"""

from __future__ import annotations

from typing import Dict

from bridge.errors import BridgeError, require_torch

require_torch("models")  # without torch: one error that names the install command

from bridge.models.bert import (
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertLMHeadModel,
    BertModel,
)
from bridge.models.gpt2 import (
    GPT2DoubleHeadsModel,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
)
from bridge.models.llama import (
    LlamaForCausalLM,
    LlamaForQuestionAnswering,
    LlamaForSequenceClassification,
    LlamaForTokenClassification,
    LlamaModel,
    MistralForCausalLM,
    MistralForQuestionAnswering,
    MistralForSequenceClassification,
    MistralForTokenClassification,
    MistralModel,
    Qwen2ForCausalLM,
    Qwen2ForQuestionAnswering,
    Qwen2ForSequenceClassification,
    Qwen2ForTokenClassification,
    Qwen2Model,
)
from bridge.models.outputs import (
    BaseModelOutput,
    DoubleHeadsOutput,
    LogitsOutput,
    ModelOutput,
    PreTrainingOutput,
    QuestionAnsweringOutput,
)
from bridge.models.pretrained import (
    CheckpointMismatchError,
    MissingWeightsWarning,
    PretrainedModel,
    UnusedWeightsWarning,
)
from bridge.models.checkpoint import CorruptWeightsError, WeightsNotFoundError
from bridge.models.roberta import (
    RobertaForCausalLM,
    RobertaForMaskedLM,
    RobertaForMultipleChoice,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
)


class UnknownModelError(BridgeError, KeyError):
    """A model type (family) or task we do not implement; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


FAMILIES: Dict[str, tuple] = {
    "bert": (
        BertModel,
        BertForPreTraining,
        BertLMHeadModel,
        BertForMaskedLM,
        BertForNextSentencePrediction,
        BertForSequenceClassification,
        BertForMultipleChoice,
        BertForTokenClassification,
        BertForQuestionAnswering,
    ),
    "gpt2": (
        GPT2Model,
        GPT2LMHeadModel,
        GPT2DoubleHeadsModel,
        GPT2ForSequenceClassification,
        GPT2ForTokenClassification,
        GPT2ForQuestionAnswering,
    ),
    "roberta": (
        RobertaModel,
        RobertaForMaskedLM,
        RobertaForCausalLM,
        RobertaForSequenceClassification,
        RobertaForMultipleChoice,
        RobertaForTokenClassification,
        RobertaForQuestionAnswering,
    ),
    "llama": (
        LlamaModel,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        LlamaForTokenClassification,
        LlamaForQuestionAnswering,
    ),
    "mistral": (
        MistralModel,
        MistralForCausalLM,
        MistralForSequenceClassification,
        MistralForTokenClassification,
        MistralForQuestionAnswering,
    ),
    "qwen2": (
        Qwen2Model,
        Qwen2ForCausalLM,
        Qwen2ForSequenceClassification,
        Qwen2ForTokenClassification,
        Qwen2ForQuestionAnswering,
    ),
}
CLASS_PREFIXES = {
    "bert": "Bert",
    "gpt2": "GPT2",
    "roberta": "Roberta",
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
}


class TaskTable(dict):
    """{task: class} for one family; a missing task raises UnknownModelError listing the family's tasks."""

    def __init__(self, model_type: str, classes: Dict[str, type]) -> None:
        super().__init__(classes)
        self.model_type = model_type

    def __missing__(self, task: str) -> type:
        if isinstance(task, str) and task.lower() in self:
            return self[task.lower()]
        raise UnknownModelError(
            f"model type {self.model_type!r} has no task {task!r}; its tasks are: {', '.join(self)}"
        )


def get_model_type(model_type: str) -> Dict[str, type]:
    """{task: model class} for a config's `model_type` ("bert", "gpt2", "roberta", "llama", ...)."""
    if model_type not in FAMILIES:
        raise UnknownModelError(
            f"unsupported model type {model_type!r}; supported: {', '.join(sorted(FAMILIES))}"
        )
    prefix = CLASS_PREFIXES[model_type]
    return TaskTable(model_type, {cls.__name__[len(prefix) :].lower(): cls for cls in FAMILIES[model_type]})


__all__ = [
    "get_model_type",
    "UnknownModelError",
    "PretrainedModel",
    "CheckpointMismatchError",
    "WeightsNotFoundError",
    "CorruptWeightsError",
    "UnusedWeightsWarning",
    "MissingWeightsWarning",
    "ModelOutput",
    "BaseModelOutput",
    "LogitsOutput",
    "PreTrainingOutput",
    "QuestionAnsweringOutput",
    "DoubleHeadsOutput",
    *(cls.__name__ for classes in FAMILIES.values() for cls in classes),
]
