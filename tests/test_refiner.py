"""Refined models: the U2-Net at a base size, a learned refiner at full resolution."""

import json

import pytest
import torch

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import ModelInfo, RefineInfo
from maskdepth.runtime.preprocess import Preprocessing
from maskdepth.train.models import InferenceModel, create_model
from maskdepth.train.models.refiner import REFINERS, downscale

BASE, FULL = (64, 96), (256, 384)  # non-square, 4x: a 2:3 frame
REFINE = RefineInfo("guided", base_size=(64, 96), min_size=(64, 96), max_size=(512, 768))


def test_refine_info_round_trips_and_is_written_only_when_set():
    plain = ModelInfo("u2netp-md", Preprocessing(size=(224, 224)))
    assert not any("refine" in key for key in plain.to_props())
    refined = ModelInfo("u2netp-md", Preprocessing(size=FULL), refine=REFINE)
    props = refined.to_props()
    assert json.loads(props["maskdepth.refine"]) == {
        "kind": "guided",
        "base_size": [64, 96],
        "min_size": [64, 96],
        "max_size": [512, 768],
    }
    assert ModelInfo.from_props(props) == refined
    assert ModelInfo.from_dict(refined.to_dict()).refine == REFINE
    assert ModelInfo.from_props(plain.to_props()).refine is None
    # a refined file says format 2, which a runtime from before the refiner (it read 1) refuses
    assert plain.to_props()["maskdepth.format_version"] == "1"
    assert props["maskdepth.format_version"] == "2"
    assert REFINE.fits((256, 384)) and not REFINE.fits((600, 384)) and not REFINE.fits((32, 96))


def test_refine_info_refuses_a_base_size_off_the_stride_and_an_empty_range():
    with pytest.raises(MaskDepthError, match="multiple of 32"):
        ModelInfo("u2netp-md", Preprocessing(), refine=RefineInfo("guided", (60, 96), FULL, FULL))
    with pytest.raises(MaskDepthError, match="min above max"):
        RefineInfo("guided", BASE, (512, 512), (256, 256))


def test_without_refine_the_model_is_exactly_todays():
    model = create_model("u2netp-md")
    assert type(model).__name__ == "U2NetMD" and model.options == {"decoders": 2}
    assert sum(p.numel() for p in model.parameters()) == 1_769_306
    refined = create_model("u2netp-md", refine="guided")
    keys = list(model.state_dict())
    assert [k[len("base.") :] for k in refined.state_dict() if k.startswith("base.")] == keys
    with pytest.raises(MaskDepthError, match="unknown refine 'sharp'"):
        create_model("u2netp-md", refine="sharp")


@pytest.mark.parametrize("kind", sorted(REFINERS))
def test_refined_forward_at_a_non_square_size_and_gradients_reach_both_parts(kind):
    torch.manual_seed(0)
    model = create_model("u2netp-md", refine=kind)
    assert model.options == {"decoders": 2, "refine": kind}
    assert isinstance(model.base, torch.nn.Module) and isinstance(model.refiner, torch.nn.Module)
    for p in model.refiner.parameters():  # off the identity start, so every layer has a say
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 6, *FULL)
    out = model(x, base_size=BASE)
    for maps in out.values():
        assert len(maps) == 8
        assert [tuple(m.shape[-2:]) for m in maps] == [FULL, FULL] + [BASE] * 6
        assert all(m.shape[:2] == (2, 1) for m in maps)
    sum(m.square().mean() for maps in out.values() for m in maps[:1]).backward()
    for part in (model.base, model.refiner):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads), type(part).__name__
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


@pytest.mark.parametrize("kind", sorted(REFINERS))
def test_a_fresh_refiner_starts_as_the_bilinear_upsampling(kind):
    torch.manual_seed(0)
    model = create_model("u2netp-md", refine=kind).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 6, *FULL), base_size=BASE)
    for refined, upsampled, *_ in out.values():
        if kind == "conv":  # the correction is zero
            torch.testing.assert_close(refined, upsampled)
        else:  # b = the box-filtered logits: a 3x3 blur at the base size, then upsampled
            assert (refined - upsampled).abs().mean() < 0.5 * upsampled.std()


def test_downscale_is_area_averaging_at_an_exact_ratio():
    x = torch.rand(1, 6, *FULL)
    small = downscale(x, BASE)
    assert small.shape[-2:] == BASE
    torch.testing.assert_close(small, torch.nn.functional.adaptive_avg_pool2d(x, BASE))


def test_inference_form_of_a_refined_model_is_full_resolution_probabilities():
    model = create_model("u2netp-md", refine="guided").eval()
    with pytest.raises(ValueError, match="base_size"):
        InferenceModel(model)
    bg, scene = torch.randn(1, 3, 200, 360), torch.randn(1, 3, 200, 360)
    with torch.no_grad():
        mask, depth = InferenceModel(model, base_size=BASE)(bg, scene)
        expected = model(torch.cat([bg, scene], 1), base_size=BASE)
    assert mask.shape == depth.shape == (1, 1, 200, 360)
    torch.testing.assert_close(mask, torch.sigmoid(expected["mask"][0]))
    model.base_size = BASE  # what a refined checkpoint's loader sets
    assert InferenceModel(model).base_size == BASE


def test_a_refined_checkpoint_rebuilds_with_its_base_size():
    from maskdepth.train.checkpoint import model_from_checkpoint, model_record

    model = create_model("u2netp-md", refine="conv")
    info = ModelInfo("u2netp-md", Preprocessing(size=FULL), refine=REFINE)
    ckpt = {"model": model_record(model), "state_dict": model.state_dict()}
    ckpt["config"] = info.to_dict()
    loaded, pre = model_from_checkpoint(ckpt)
    assert loaded.options == {"decoders": 2, "refine": "conv"} and loaded.base_size == BASE
    assert pre.size == FULL
