"""Training checkpoints that are never half-written and resume to the same weights.

A checkpoint is a folder: ``model.safetensors`` (the student's weights), ``train_state.pt``
(optimizer, scheduler and RNG states: tensors and numbers only, read back with
``torch.load(weights_only=True)``, so nothing is unpickled) and ``state.json`` (step, epoch, batch
position, dev history, and the run's fingerprint: data + config). It is written to a temporary
sibling folder and swapped in by renames, so a SIGKILL at any moment leaves the previous
checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from ..errors import BadInputError, ModelFilesError
from ..paths import atomic_file, atomic_folder

CHECKPOINT_DIR = "checkpoint"
BEST_WEIGHTS = "best.safetensors"
START_WEIGHTS = "start.safetensors"  # the warm start, for the final interpolation
FORMAT = 1


class Checkpoint:
    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def save(self, model, optimizer, scheduler, state: dict, fingerprint: str) -> None:
        import torch
        from safetensors.torch import save_model

        with atomic_folder(self.folder, overwrite=True) as tmp:  # the old checkpoint stays until the new is whole
            save_model(model, str(tmp / "model.safetensors"))
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    "python_rng": list(_flatten_random_state(random.getstate())),
                },
                tmp / "train_state.pt",
            )
            (tmp / "state.json").write_text(
                json.dumps({"format": FORMAT, "fingerprint": fingerprint, **state}, indent=1), encoding="utf-8"
            )
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())

    def load(self, model, optimizer, scheduler, fingerprint: str) -> dict:
        """Restore everything saved; returns the loop state. Refuses a checkpoint of other data or config."""
        import torch
        from safetensors.torch import load_model

        try:
            state = json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"{self.folder / 'state.json'} is unreadable ({exc}); delete {self.folder} to start over") from exc
        if state.pop("format", None) != FORMAT:
            raise ModelFilesError(f"{self.folder} was written by another xlembed version; delete it to start over")
        if state.pop("fingerprint", None) != fingerprint:
            raise BadInputError(
                f"the checkpoint in {self.folder} belongs to a run with other data, models or settings; resume with "
                "the same command, or delete the folder to start over"
            )
        try:
            load_model(model, str(self.folder / "model.safetensors"))
            saved = torch.load(self.folder / "train_state.pt", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any damage gets the same advice
            raise ModelFilesError(f"the checkpoint in {self.folder} is damaged ({exc}); delete it to start over") from exc
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        random.setstate(_unflatten_random_state(saved["python_rng"]))
        return state

def save_weights(model, path: Path) -> None:
    """Write the model's weights to ``path`` (safetensors) through a temporary name: never half-written."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        save_model(model, str(tmp))


def load_weights(model, path: Path, what: str) -> None:
    """Load weights written by :func:`save_weights`; ``what`` names them in the error when the file is missing."""
    from safetensors.torch import load_model

    if not path.is_file():
        raise ModelFilesError(f"{path} ({what}) is missing: delete {path.parent} and train again")
    try:
        load_model(model, str(path))
    except Exception as exc:  # noqa: BLE001 - any damage gets the same advice
        raise ModelFilesError(f"{path} ({what}) is damaged ({exc}): delete {path.parent} and train again") from exc


def _flatten_random_state(state) -> list:
    version, internal, gauss = state
    return [version, *internal, -1 if gauss is None else gauss]


def _unflatten_random_state(flat) -> tuple:
    flat = [int(x) if i < len(flat) - 1 else x for i, x in enumerate(flat)]
    version, internal, gauss = flat[0], tuple(flat[1:-1]), flat[-1]
    return version, internal, None if gauss == -1 else float(gauss)
