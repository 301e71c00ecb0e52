"create_detector over timm: shapes, unit embeddings, heads sized by a dummy forward, offline build."
import pytest
import torch

from gsrepro.models import BACKBONES, backbone_spec, create_detector, fake_probability


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_contract_shapes(name):
    det = create_detector(name, proj_dim=32).eval()                 # pretrained=False: no download
    with torch.no_grad():
        z, logit = det(torch.randn(1, 3, 32, 32))
    assert z.shape == (1, 32) and logit.shape == (1,)
    assert torch.allclose(z.norm(dim=1), torch.ones(1), atol=1e-5)
    with torch.no_grad():
        assert det.backbone(torch.zeros(1, 3, 32, 32)).shape[1] == det.feat_dim == det.proj.in_features
    if name == "vgg19":                                              # heads sized by the dummy forward, not num_features
        assert det.backbone.num_features == 512 and det.feat_dim == 4096


def test_mini_train_step_and_ce_k1_head():
    torch.manual_seed(0)
    det = create_detector("mini", n_classes=5)
    opt = torch.optim.Adam(det.parameters(), 1e-3)
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 5, (8,))
    losses = []
    for _ in range(5):
        z, logits = det(x)
        assert z.shape == (8, 512) and logits.shape == (8, 5)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    p = fake_probability(logits.detach())
    assert p.shape == (8,) and ((p >= 0) & (p <= 1)).all()


def test_classifier_reads_the_projection_by_default():
    det = create_detector("mini", proj_dim=16)
    assert det.classifier.in_features == 16
    assert create_detector("mini", proj_dim=16, classifier_input="feature").classifier.in_features == 256


def test_unknown_backbone_is_one_line_error():
    with pytest.raises(ValueError, match=r"unknown backbone 'effnet': neither a gsrepro name \(efficientnet_b4, .*mini\) nor a timm architecture") as e:
        create_detector("effnet")
    assert "\n" not in str(e.value)


def test_input_size_mean_std_come_from_timm():
    import timm
    sizes = {name: spec.input_size for name, spec in BACKBONES.items()}
    assert sizes == dict(efficientnet_b4=320, legacy_xception=299, resnet50=224, dpn68=224, vgg19=224, mini=160, mini_cnn=64)
    for name, spec in BACKBONES.items():
        cfg = timm.models.get_pretrained_cfg(spec.timm_name)
        assert (spec.input_size, spec.mean, spec.std) == (cfg.input_size[-1], tuple(cfg.mean), tuple(cfg.std))
    assert backbone_spec("mini").timm_name == "test_efficientnet"
    assert backbone_spec("mini_cnn").timm_name == "gsrepro_cnn"   # the package's own, registered in timm's registry
    assert backbone_spec("legacy_xception").mean == backbone_spec("legacy_xception").std == (0.5, 0.5, 0.5)
    assert backbone_spec("resnet50").mean == (0.485, 0.456, 0.406)


def test_pretrained_false_builds_offline(monkeypatch):
    import socket

    import timm.models._builder as builder
    calls = []
    monkeypatch.setattr(builder, "load_pretrained", lambda *a, **k: calls.append(k))
    def no_network(*a, **k): raise AssertionError("tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    create_detector("dpn68", pretrained=False, weights_cache="/nowhere")
    assert calls == []
    create_detector("dpn68", pretrained=True)                    # routed to timm's loader (stubbed here)
    assert len(calls) == 1 and calls[0]["cache_dir"] is None     # the hub's own caches
    create_detector("dpn68", pretrained=True, weights_cache="/data/weights")
    assert len(calls) == 2 and calls[1]["cache_dir"] == "/data/weights"
