"""``rtsave checkpoint export``: a checkpoint as the files SB3 and rl_zoo3 look for."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtsave_async.checkpoints import CheckpointError, CheckpointInfo, load_checkpoint
from rtsave_async.cli.arguments import check_writable
from rtsave_async.cli.environments import recorded_env_name
from rtsave_async.cli.errors import CliError
from rtsave_async.cli.session import build_vec_env, set_torch_threads, verified_checkpoint
from rtsave_async.names import REPLAY_BUFFER_SUFFIX, VEC_NORMALIZE_SUFFIX


@dataclass
class ExportLayout:
    """Where each exported file goes."""

    model: Path
    vec_normalize: Path
    replay_buffer: Path


def layout_for(name: str, out_dir: Path, env_id: str | None) -> ExportLayout:
    """``sb3``: SB3's usual names side by side. ``zoo``: where ``rl_zoo3.train -i <env>.zip`` looks
    (VecNormalize under ``<dirname of the zip>/<env id>/``, the replay buffer beside the zip)."""
    if name == "sb3":
        return ExportLayout(out_dir / "model.zip", out_dir / "vecnormalize.pkl", out_dir / "replay_buffer.pkl")
    if not env_id:
        raise CliError("--layout zoo needs the env id, and this checkpoint records none; use --layout sb3")
    model = out_dir / f"{env_id}.zip"
    return ExportLayout(model, model.parent / env_id / "vecnormalize.pkl", model.parent / "replay_buffer.pkl")


def export(args: argparse.Namespace) -> int:
    set_torch_threads(args.torch_threads)
    info = verified_checkpoint(args.checkpoint)
    layout = layout_for(args.layout, Path(args.out_dir), recorded_env_name(info.metadata or {}))
    for folder in {layout.model.parent, layout.vec_normalize.parent}:
        check_writable(folder, "OUT_DIR")
    written = [copy_file(info.model_path, layout.model)]  # the zip is already what model.save writes
    has_statistics = info.attachment(VEC_NORMALIZE_SUFFIX) is not None
    if has_statistics or info.attachment(REPLAY_BUFFER_SUFFIX) is not None:
        model = load_for_export(info, args.allow_pickle, with_env=has_statistics)
        if has_statistics:  # a pickle of the VecNormalize object, as VecNormalize.save writes it
            model.get_vec_normalize_env().save(layout.vec_normalize)
            written.append(layout.vec_normalize)
        if getattr(model, "replay_buffer", None) is not None and info.attachment(REPLAY_BUFFER_SUFFIX) is not None:
            model.save_replay_buffer(layout.replay_buffer)
            written.append(layout.replay_buffer)
    print(f"rtsave: wrote {', '.join(str(path) for path in written)}")
    if args.layout == "zoo":
        algo = str((info.metadata or {}).get("algorithm", "ALGO")).lower()
        print(f"rtsave: continue with rl_zoo3: python -m rl_zoo3.train --algo {algo} --env "
              f"{recorded_env_name(info.metadata)} -i {layout.model}")
    return 0


def copy_file(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    return target


def load_for_export(info: CheckpointInfo, allow_pickle: bool, with_env: bool) -> Any:
    """The checkpoint's model with its replay buffer filled and, ``with_env``, its VecNormalize
    statistics around the recorded env (``num_envs`` copies, as saved)."""
    metadata = info.metadata or {}
    env = None
    if with_env:
        env = build_vec_env(recorded_env_name(metadata), dict(metadata.get("env_kwargs") or {}), metadata["num_envs"],
                            seed=0)
    try:
        return load_checkpoint(info, env, restore_rng=False, device="cpu", allow_pickle=allow_pickle).model
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
