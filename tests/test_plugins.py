"""Your own parts under the paper's protocol: any timm architecture as the backbone, trained through `gsrepro train`
on a tiny SynthFF (32 px)."""
import pytest

from gsrepro.cli import main
from gsrepro.core import load_json
from gsrepro.synth import generate, get_preset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A tiny SynthFF: 12 pairs, 32 px, 2 frames per video."
    root = tmp_path_factory.mktemp("plugins")
    return generate(root / "synth", get_preset("mini", n_pairs=12, image_size=32, frames=2, qualities=("c23",),
                                               celebdf_real=3, dfdc_pairs=1), workers=1, progress=False)


TINY = ["--set", "image_size=32", "--set", "epochs=1", "--set", "batch_size=16", "--set", "queue_size=64",
        "--set", "progress=false"]


def test_any_timm_backbone_trains(tiny, tmp_path):
    "resnet18 is none of the paper's five backbones; timm has it, so it trains, at the size asked and timm's statistics."
    run = tmp_path / "resnet18"
    assert main(["train", "--preset", "mini", "--data", str(tiny), "--out", str(run), *TINY,
                 "--set", "loss=ce2", "--set", "backbone=resnet18", "--set", "pretrained=false"]) == 0
    assert load_json(run / "train.json")["complete"]
    assert load_json(run / "config.json")["backbone"] == "resnet18"
    assert load_json(run / "train.json")["input"] == dict(backbone="resnet18", size=32, mean=[0.485, 0.456, 0.406],
                                                          std=[0.229, 0.224, 0.225])   # the size asked, timm's statistics
