"""The model zoo: the seed's exact network, its variants, the two forms of output."""

import pytest
import torch

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.train.models import InferenceModel, create_model, list_models


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_seed_network_has_exactly_the_seeds_parameter_count():
    model = create_model("u2netp-md")
    assert _params(model) == 1_769_306
    assert _params(model.encoder) == 496_512  # the shared U2-Net-small encoder
    assert [_params(d) for d in model.decoders] == [636_397, 636_397]  # one per task


def test_variants():
    assert list_models() == ["u2net-md", "u2netp-lite", "u2netp-md"]
    lite = create_model("u2netp-lite")
    assert len(lite.decoders) == 1 and 1_100_000 < _params(lite) < 1_180_000
    assert _params(create_model("u2net-md")) > 40_000_000  # the full-width stages


@pytest.mark.parametrize("name", ["u2netp-md", "u2netp-lite"])
@pytest.mark.parametrize("size", [(32, 32), (40, 56)])
def test_training_form_is_seven_logit_maps_per_task(name, size):
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 6, *size))
    assert set(out) == {"mask", "depth"}
    for maps in out.values():
        assert len(maps) == 7
        assert all(m.shape == (2, 1, *size) for m in maps)


def test_inference_form_is_the_fused_probabilities():
    model = create_model("u2netp-md").eval()
    bg, scene = torch.randn(1, 3, 48, 48), torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        mask, depth = InferenceModel(model)(bg, scene)
        logits = model(torch.cat([bg, scene], 1))
    torch.testing.assert_close(mask, torch.sigmoid(logits["mask"][0]))
    torch.testing.assert_close(depth, torch.sigmoid(logits["depth"][0]))
    assert mask.min() >= 0 and mask.max() <= 1


def test_unknown_names_and_options_are_clear():
    with pytest.raises(MaskDepthError, match="unknown model 'u2net-xl'; expected one of u2net-md"):
        create_model("u2net-xl")
    with pytest.raises(MaskDepthError, match="unknown option\\(s\\) width"):
        create_model("u2netp-md", width=3)


def test_options_are_recorded_and_rebuild_the_same_model():
    from maskdepth.runtime.model_info import ModelInfo
    from maskdepth.runtime.preprocess import Preprocessing
    from maskdepth.train.checkpoint import model_from_checkpoint, model_record

    assert create_model("u2netp-md").options == {"decoders": 2}
    model = create_model("u2netp-md", decoders=1)
    assert model_record(model) == {"name": "u2netp-md", "options": {"decoders": 1}}
    ckpt = {"model": model_record(model), "state_dict": model.state_dict()}
    config = ModelInfo("u2netp-md", Preprocessing()).to_dict()
    rebuilt, pre = model_from_checkpoint(ckpt | {"config": config})
    assert pre == Preprocessing()
    assert len(rebuilt.decoders) == 1 and _params(rebuilt) == _params(model)


def test_every_model_declares_a_config_read_without_torch():
    import subprocess
    import sys

    from maskdepth.train.models import default_config

    assert [default_config(name).model for name in list_models()] == list_models()
    assert {default_config(name).stride for name in list_models()} == {32}
    code = (
        "import sys; from maskdepth.train.config import TrainConfig; TrainConfig(sizes=[64]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_difference_prior_makes_six_filters_see_scene_minus_bg():
    model = create_model("u2netp-md")
    before = sum(p.numel() for p in model.parameters())
    model.init_prior("difference")
    assert sum(p.numel() for p in model.parameters()) == before  # same network, same size
    conv = model.encoder.stages[0].project[0]
    torch.manual_seed(0)
    bg, scene = torch.randn(2, 3, 9, 9), torch.randn(2, 3, 9, 9)
    out = conv(torch.cat([bg, scene], dim=1))
    for colour in range(3):
        difference = scene[:, colour] - bg[:, colour]
        torch.testing.assert_close(out[:, 2 * colour], difference)
        torch.testing.assert_close(out[:, 2 * colour + 1], -difference)
    # The other filters keep their random start.
    assert conv.weight[6:].abs().sum() > 0 and not torch.equal(conv.weight[6], conv.weight[7])
    with pytest.raises(ValueError, match="unknown prior"):
        model.init_prior("sum")
