import pickle

import pytest
import torch

from snapsight.artifacts.files import atomic_torch_save, load_training_state, load_weights, save_weights
from snapsight.errors import SnapsightError


class Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_training_state_refuses_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(SnapsightError, match="refused for safety|corrupt"):
        load_training_state(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_atomic_roundtrip_and_no_temp_left(tmp_path):
    state = {"step": 3, "t": torch.arange(4), "nested": {"lr": 0.1}}
    atomic_torch_save(state, tmp_path / "s.pt")
    out = load_training_state(tmp_path / "s.pt")
    assert out["step"] == 3 and torch.equal(out["t"], state["t"])
    save_weights({"w": torch.ones(2, 2)}, tmp_path / "w.safetensors")
    assert torch.equal(load_weights(tmp_path / "w.safetensors")["w"], torch.ones(2, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt", "w.safetensors"]


def test_bad_weights_file(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(SnapsightError, match="not a valid safetensors"):
        load_weights(tmp_path / "bad.safetensors")


def test_atomic_folder_replaces_on_success_and_keeps_the_old_folder_on_error(tmp_path):
    from snapsight.artifacts.files import atomic_folder

    target = tmp_path / "entry"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("half-written")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "one"
    with atomic_folder(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # no temporary folder left behind
