"""RoBERTa (Liu et al., 2019): BERT's encoder with its own embeddings and heads.

The encoder, pooler and the multiple-choice, token-classification and question-answering heads
are BERT's (imported from bert.py); this file defines only what differs: position ids counted from
`padding_idx + 1` and skipping padding, the LM head (`lm_head.*`), the sequence-classification
head (`classifier.dense` / `classifier.out_proj`), and the `roberta.` prefix.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from bridge.config import RobertaConfig
from bridge.models import bert
from bridge.models.functional import activation
from bridge.models.losses import causal_lm_loss, sequence_classification_loss, token_loss
from bridge.models.outputs import LogitsOutput, head_output

Tensor = torch.Tensor


class RobertaEmbeddings(bert.BertEmbeddings):
    """BERT's embeddings, but positions start at padding_idx + 1 and padding tokens keep padding_idx.

    (fairseq's convention: with pad_token_id = 1, the first real token is at position 2.)
    """

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config, position_padding_idx=config.pad_token_id)
        self.padding_idx = config.pad_token_id

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        past_length: int = 0,
    ) -> Tensor:
        if position_ids is None:
            if input_ids is not None:
                not_padding = input_ids.ne(self.padding_idx).int()
                counts = torch.cumsum(not_padding, dim=1) + past_length
                position_ids = (counts * not_padding).long() + self.padding_idx
            else:  # embeddings alone cannot tell padding apart
                first = self.padding_idx + 1
                positions = torch.arange(first, first + inputs_embeds.shape[1], device=inputs_embeds.device)
                position_ids = positions.expand(inputs_embeds.shape[:2])
        return super().forward(input_ids, token_type_ids, position_ids, inputs_embeds, past_length)


class RobertaPretrainedModel(bert.BertPretrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"


class RobertaModel(RobertaPretrainedModel, bert.BertModel):
    """BERT's model with RoBERTa's embeddings: `last_hidden_state` and `pooler_output`."""

    @staticmethod
    def make_embeddings(config: RobertaConfig) -> nn.Module:
        return RobertaEmbeddings(config)


class RobertaLMHead(nn.Module):
    """dense -> gelu -> layer_norm -> decoder to the vocabulary (decoder tied to the embeddings)."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.gelu = activation("gelu")  # always gelu, whatever hidden_act says

    def forward(self, features: Tensor) -> Tensor:
        return self.decoder(self.layer_norm(self.gelu(self.dense(features))))


LM_HEAD_TIES = {
    "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
    "lm_head.decoder.bias": "lm_head.bias",
}


class RobertaLanguageModel(RobertaPretrainedModel):
    """The encoder and `lm_head`; the two language models differ in their loss."""

    tied_weights = LM_HEAD_TIES
    language_loss = staticmethod(token_loss)

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        if labels is not None:  # training: no cache, as in transformers
            inputs["use_cache"] = False
        outputs = self.roberta(input_ids, **inputs)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = self.language_loss(logits, labels) if labels is not None else None
        return head_output(outputs, logits, loss, with_cache=True)


class RobertaForMaskedLM(RobertaLanguageModel):
    """Vocabulary logits per token; `labels` (-100 = not masked) give the masked-token cross-entropy."""

    language_loss = staticmethod(token_loss)


class RobertaForCausalLM(RobertaLanguageModel):
    """Next-token logits; meant for configs with `is_decoder=True` (causal attention)."""

    language_loss = staticmethod(causal_lm_loss)


class RobertaClassificationHead(nn.Module):
    """The <s> token's state -> dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = bert.classifier_dropout(config)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features: Tensor) -> Tensor:
        hidden = torch.tanh(self.dense(self.dropout(features[:, 0, :])))
        return self.out_proj(self.dropout(hidden))


class RobertaForSequenceClassification(RobertaPretrainedModel):
    """`num_labels` logits from the <s> token through a two-layer head; regression when num_labels == 1."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(config)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        outputs = self.roberta(input_ids, **inputs)
        logits = self.classifier(outputs.last_hidden_state)
        loss = sequence_classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        return head_output(outputs, logits, loss)


class RobertaForMultipleChoice(RobertaPretrainedModel, bert.BertForMultipleChoice):
    """BERT's multiple-choice head on RoBERTa: one logit per choice from the pooled <s> state."""

    base_model_class = RobertaModel


class RobertaForTokenClassification(RobertaPretrainedModel, bert.BertForTokenClassification):
    """BERT's token-classification head on RoBERTa."""

    base_model_class = RobertaModel


class RobertaForQuestionAnswering(RobertaPretrainedModel, bert.BertForQuestionAnswering):
    """BERT's span-extraction head on RoBERTa."""

    base_model_class = RobertaModel
