"Pretrained weights: where timm loads them from, the cache lookup, offline errors, and `gsrepro weights`, all without network."
import hashlib
import shutil
import socket
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import safetensors.torch
import timm
import torch

import gsrepro.models as models
import gsrepro.weights as weights
from gsrepro.cli import main
from gsrepro.models import (BACKBONES, cached_weights, create_detector, fetch_weights, offline_mode,
                            pretrained_source, require_weights, weights_folder)

PAPER_FIVE = ["efficientnet_b4", "legacy_xception", "resnet50", "dpn68", "vgg19"]


def write_fake_hub_weights(cache) -> dict:
    "Put a `model.safetensors` for the `mini` backbone into `cache` in the hub's layout; return its state dict."
    sd = timm.create_model("test_efficientnet", num_classes=1000).state_dict()
    w = sd["conv_stem.weight"]
    sd["conv_stem.weight"] = torch.linspace(-1, 1, w.numel()).view_as(w)           # known values
    commit = hashlib.sha1(b"gsrepro fake weights").hexdigest()                    # any 40-hex snapshot name
    repo = Path(cache) / "models--timm--test_efficientnet.r160_in1k"
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(repo / "snapshots" / commit / "model.safetensors"))
    return sd


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Offline for every test here: HF_HUB_OFFLINE=1 in the environment and in huggingface_hub's own flag (it reads
    the variable once, at import, and `is_offline_mode()` returns that constant), sockets that refuse to connect,
    and the default caches moved to empty temporary folders."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    def refuse(*a, **k): raise AssertionError("tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-default"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch-default"))


def online(monkeypatch):
    "Offline mode off (sockets still refuse): for tests that stub the download itself."
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


def test_really_offline():
    import huggingface_hub
    assert huggingface_hub.constants.is_offline_mode() and offline_mode()
    with pytest.raises(AssertionError, match="network"):
        socket.create_connection(("127.0.0.1", 9))


@pytest.mark.parametrize("name", sorted(set(BACKBONES) - {"mini_cnn"}))
def test_pretrained_source_is_where_timm_loads_from(name):
    from timm.models._builder import _resolve_pretrained_source
    src = pretrained_source(name)
    kind, loc = _resolve_pretrained_source(timm.models.get_pretrained_cfg(BACKBONES[name].timm_name).to_dict())
    assert src["kind"] == kind
    if kind == "hf-hub":
        assert src["repo_id"] == loc and src["filenames"] == ["model.safetensors", "pytorch_model.bin"]
    else:
        assert src["url"] == loc and src["filenames"] == [loc.rsplit("/", 1)[1]]
    assert (name == "legacy_xception") == (kind == "url")


def test_the_package_cnn_has_no_weights_to_fetch():
    "`mini_cnn` trains from scratch: asking for its weights is one line, not a download."
    with pytest.raises(ValueError, match=r"^backbone 'mini_cnn' \(gsrepro_cnn\) has no pretrained weights in timm$"):
        pretrained_source("mini_cnn")


def test_cached_weights_hub_layout_and_url_file(tmp_path):
    cache = tmp_path / "w"
    assert cached_weights("mini", cache) is None
    write_fake_hub_weights(cache)
    path = cached_weights("mini", cache)
    assert path.name == "model.safetensors" and path.is_relative_to(cache)
    assert cached_weights("resnet50", cache) is None and cached_weights("legacy_xception", cache) is None
    (cache / "xception-43020ad28.pth").write_bytes(b"x")
    assert cached_weights("legacy_xception", cache) == cache / "xception-43020ad28.pth"


def test_default_caches_are_the_hubs(tmp_path):
    assert weights_folder("mini") == tmp_path / "hf-default"
    assert weights_folder("legacy_xception") == tmp_path / "torch-default" / "checkpoints"
    write_fake_hub_weights(tmp_path / "hf-default")
    assert cached_weights("mini") is not None and cached_weights("mini", tmp_path / "elsewhere") is None
    (tmp_path / "torch-default" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch-default" / "checkpoints" / "xception-43020ad28.pth").write_bytes(b"x")
    assert cached_weights("legacy_xception") == tmp_path / "torch-default" / "checkpoints" / "xception-43020ad28.pth"


def test_create_detector_loads_the_cached_file_offline(tmp_path):
    sd = write_fake_hub_weights(tmp_path / "w")
    det = create_detector("mini", pretrained=True, weights_cache=tmp_path / "w")
    loaded = det.backbone.state_dict()
    assert torch.equal(det.backbone.conv_stem.weight.detach(), sd["conv_stem.weight"])
    assert all(torch.equal(loaded[k], sd[k]) for k in loaded)
    with pytest.raises(FileNotFoundError):                        # hub's LocalEntryNotFoundError: not cached, offline
        create_detector("mini", pretrained=True, weights_cache=tmp_path / "empty")


def test_require_weights_returns_the_cached_file(tmp_path):
    write_fake_hub_weights(tmp_path / "w")
    assert require_weights("mini", tmp_path / "w") == cached_weights("mini", tmp_path / "w")
    assert fetch_weights("mini", tmp_path / "w") == cached_weights("mini", tmp_path / "w")


@pytest.mark.parametrize("name", ["mini", "legacy_xception", "vgg19"])
def test_require_weights_offline_is_one_line(name, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        require_weights(name, tmp_path / "empty")
    msg = str(e.value)
    assert "\n" not in msg and f"backbone {name!r}" in msg and str(tmp_path / "empty") in msg
    src = pretrained_source(name)
    assert (src["repo_id"] if src["kind"] == "hf-hub" else src["url"]) in msg
    assert "HF_HUB_OFFLINE=1" in msg
    flag = "--backbone mini" if name == "mini" else "--preset paper"
    assert f"`gsrepro weights fetch {flag} --cache {tmp_path / 'empty'}`" in msg


def test_require_weights_without_cache_names_the_hub_cache(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        require_weights("resnet50")
    assert str(tmp_path / "hf-default") in str(e.value)
    assert "`gsrepro weights fetch --preset paper`" in str(e.value)


def test_offline_mode_reads_the_environment_now(monkeypatch):
    online(monkeypatch)
    assert not offline_mode()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")                      # set after huggingface_hub was imported
    assert offline_mode()


def test_any_download_error_becomes_one_line(monkeypatch, tmp_path):
    online(monkeypatch)
    def unreachable(*a, **k): raise OSError("[Errno 101] Network is unreachable\nmore detail")
    monkeypatch.setattr(timm, "create_model", unreachable)
    with pytest.raises(FileNotFoundError) as e:
        require_weights("dpn68", tmp_path / "w")
    assert "\n" not in str(e.value) and "Network is unreachable more detail" in str(e.value)
    assert "gsrepro weights fetch --preset paper --cache" in str(e.value)


def test_fetch_weights_lets_timm_download_into_the_cache(monkeypatch, tmp_path):
    online(monkeypatch)
    write_fake_hub_weights(tmp_path / "hub")                       # what the hub would serve
    calls = []
    def fake_download(name, **kwargs):                             # what timm does online: download, then load
        calls.append((name, kwargs))
        shutil.copytree(tmp_path / "hub", kwargs["cache_dir"], dirs_exist_ok=True)
    monkeypatch.setattr(timm, "create_model", fake_download)
    path = fetch_weights("mini", tmp_path / "w")
    assert calls == [("test_efficientnet", dict(pretrained=True, num_classes=0, cache_dir=str(tmp_path / "w")))]
    assert path == cached_weights("mini", tmp_path / "w")
    assert require_weights("mini", tmp_path / "w") == path and len(calls) == 1   # cached: no second download


def test_fetch_weights_offline_refuses_url_weights_too(tmp_path):
    with pytest.raises(ConnectionError, match="offline"):
        fetch_weights("legacy_xception", tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_preset_backbones():
    assert weights.preset_backbones("paper") == PAPER_FIVE
    assert weights.preset_backbones("synth") == PAPER_FIVE
    assert weights.preset_backbones("mini") == []


# ---- the command, through gsrepro.cli.main ----

def test_help_lists_weights(capsys):
    assert main(["--help"]) == 0
    assert "weights" in capsys.readouterr().out


def test_check_empty_cache_lists_the_five_missing(capsys, tmp_path):
    assert main(["weights", "check", "--preset", "paper", "--cache", str(tmp_path / "empty")]) == 1
    out = capsys.readouterr().out
    missing = [line.split()[1] for line in out.splitlines() if line.startswith("  missing  ")]
    assert missing == PAPER_FIVE
    assert "SimMIM" in out and "from scratch" in out
    assert f"gsrepro weights fetch --preset paper --cache {tmp_path / 'empty'}" in out


def test_check_present(capsys, tmp_path, monkeypatch):
    write_fake_hub_weights(tmp_path / "w")
    assert main(["weights", "check", "--backbone", "mini", "--cache", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "  present  mini  " in out and "model.safetensors" in out and "MB)" in out and "missing" not in out
    monkeypatch.setattr(weights, "preset_backbones", lambda preset: ["mini"])
    assert main(["weights", "check", "--preset", "paper", "--cache", str(tmp_path / "w")]) == 0
    assert main(["weights", "check", "--backbone", "mini", "vgg19", "--cache", str(tmp_path / "w")]) == 1


def test_mini_preset_needs_nothing(capsys):
    assert main(["weights", "check", "--preset", "mini"]) == 0
    assert main(["weights", "fetch", "--preset", "mini"]) == 0
    assert "from scratch" in capsys.readouterr().out


def test_fetch_cached_needs_no_network(capsys, tmp_path):
    write_fake_hub_weights(tmp_path / "w")
    assert main(["weights", "fetch", "--backbone", "mini", "--cache", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "[1/1] mini: " in out and "downloading" not in out


def test_fetch_offline_is_one_line_exit_2(capsys, tmp_path):
    assert main(["weights", "fetch", "--preset", "paper", "--cache", str(tmp_path / "empty")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("gsrepro weights: error: pretrained weights of backbone 'efficientnet_b4' are missing")
    assert f"gsrepro weights fetch --preset paper --cache {tmp_path / 'empty'}" in captured.err
    assert "[1/5] efficientnet_b4: downloading timm/efficientnet_b4.ra2_in1k" in captured.out


@pytest.mark.parametrize("argv, text", [(["check", "--preset", "huge"], "unknown preset 'huge'"),
                                        (["fetch", "--backbone", "effnet"], "unknown backbone 'effnet'")])
def test_unknown_preset_or_backbone_is_exit_2(argv, text, capsys):
    assert main(["weights", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err


def test_a_run_checks_its_weights_before_any_work(tmp_path, capsys):
    "Offline and missing: one line naming the file and the fetch command, before SimMIM and clustering; present: it trains."
    from gsrepro.synth import generate, get_preset
    data = generate(tmp_path / "synth", get_preset("mini", n_pairs=8, image_size=32, frames=2, qualities=("c23",),
                                                   celebdf_real=3, dfdc_pairs=1), workers=1, progress=False)
    sets = [f"--set={k}" for k in ("backbone=mini", "pretrained=true", "epochs=1", "image_size=32", "batch_size=16", "queue_size=64",
                                   "n_clusters=4", "adbm_k=8", "progress=false", f"cluster_cache={tmp_path / 'clusters'}",
                                   f"weights_cache={tmp_path / 'w'}")]
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *sets]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gsrepro weights fetch" in err[0] and "test_efficientnet" in err[0], err
    assert not (tmp_path / "clusters").exists() and not (tmp_path / "run" / "config.json").exists()
    write_fake_hub_weights(tmp_path / "w")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *sets]) == 0
    assert (tmp_path / "run" / "train.json").is_file()
