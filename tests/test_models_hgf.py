"""`hgf("<dir>:<task>")` and `get_model_type` as the models side of the hgf dispatch."""

import pytest
import torch

from bridge.errors import BridgeError, SpecError
from bridge.hgf import hgf
from bridge.models import (
    BertForMaskedLM,
    BertModel,
    GPT2DoubleHeadsModel,
    RobertaForCausalLM,
    UnknownModelError,
    get_model_type,
)
from test_models_parity import assert_outputs_match, make_inputs, make_pair, run

# Loading a pre-training checkpoint into a smaller head leaves weights unused; the warning itself
# is tested in test_models_loading.py.
pytestmark = pytest.mark.filterwarnings("ignore::bridge.models.UnusedWeightsWarning")

TASKS = {
    "bert": [
        "model", "forpretraining", "lmheadmodel", "formaskedlm", "fornextsentenceprediction",
        "forsequenceclassification", "formultiplechoice", "fortokenclassification", "forquestionanswering",
    ],
    "gpt2": [
        "model", "lmheadmodel", "doubleheadsmodel", "forsequenceclassification", "fortokenclassification",
        "forquestionanswering",
    ],
    "roberta": [
        "model", "formaskedlm", "forcausallm", "forsequenceclassification", "formultiplechoice",
        "fortokenclassification", "forquestionanswering",
    ],
}


@pytest.mark.parametrize("family", TASKS)
def test_get_model_type_lists_each_family_task(family):
    table = get_model_type(family)
    assert list(table) == TASKS[family]
    prefix = {"bert": "Bert", "gpt2": "GPT2", "roberta": "Roberta"}[family]
    assert all(cls.__name__.lower() == (prefix + task).lower() for task, cls in table.items())


def test_get_model_type_examples_and_errors():
    assert get_model_type("bert")["formaskedlm"] is BertForMaskedLM
    assert get_model_type("gpt2")["doubleheadsmodel"] is GPT2DoubleHeadsModel
    assert get_model_type("roberta")["forcausallm"] is RobertaForCausalLM
    with pytest.raises(UnknownModelError, match="bert, gpt2, llama, mistral, qwen2, roberta") as caught:
        get_model_type("t5")
    assert isinstance(caught.value, BridgeError)
    with pytest.raises(UnknownModelError, match="forcausallm.*forquestionanswering"):
        get_model_type("roberta")["lmheadmodel"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BERT pre-training checkpoint saved by transformers, and that model."""
    theirs, _ = make_pair("bert", "forpretraining")
    directory = tmp_path_factory.mktemp("tiny-bert")
    theirs.save_pretrained(directory)
    return directory, theirs


@pytest.mark.parametrize("task", ["model", "formaskedlm", "forpretraining", "FORMASKEDLM"])
def test_hgf_local_directory_gives_the_task_model(bert_dir, task):
    directory, theirs = bert_dir
    model = hgf(f"{directory}:{task}")
    assert type(model) is get_model_type("bert")[task.lower()]
    inputs = make_inputs("bert", "model")
    with torch.no_grad():
        base = theirs.bert(**inputs).last_hidden_state
        ours = model.base_model(**inputs).last_hidden_state
    torch.testing.assert_close(ours, base, atol=1e-5, rtol=0)


def test_hgf_passes_loading_options(bert_dir):
    directory, theirs = bert_dir
    model = hgf(f"{directory}:forpretraining", torch_dtype=torch.bfloat16, strict=True)
    assert model.dtype == torch.bfloat16
    assert isinstance(hgf(f"{directory}:model"), BertModel)
    assert hgf(f"{directory}:model", device="cpu").device == torch.device("cpu")
    inputs = make_inputs("bert", "forpretraining")
    assert_outputs_match(run(theirs, inputs), run(hgf(f"{directory}:forpretraining"), inputs))


def test_hgf_task_the_family_lacks_lists_its_tasks(bert_dir):
    directory, _ = bert_dir
    with pytest.raises(BridgeError, match="doubleheadsmodel") as caught:
        hgf(f"{directory}:doubleheadsmodel")
    assert all(task in str(caught.value) for task in TASKS["bert"])
    with pytest.raises(SpecError, match="forbanana"):
        hgf(f"{directory}:forbanana")
