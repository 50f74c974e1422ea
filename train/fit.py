"""Train the denoiser + IK network and write a model pack.

    python -m train.fit --out runs/NAME [--sources a,b] [--exclude-source snu-vsports] [--minutes M]   # corpus
    python -m train.fit --data PATH --out runs/NAME [--exclude-content run,wave-left-hand]   # one rig (Bandai)
    torchrun --nproc_per_node=2 -m train.fit ...        # data-parallel (DDP, gloo), one stream set per rank

CPU by default; fixed seeds; a progress bar; ``runs/NAME/last.pt`` checkpoints (``--resume`` continues one);
``loss.png`` and ``log.jsonl``; at the end ``runs/NAME/pack`` (see :func:`train.export.export_pack`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rtik.commands.options import int_at_least
from rtik.geometry.kinematics import mean_local_rotations
from train.batches import AugmentConfig, ExampleMaker, Streams
from train.data import ClipSet, load_clips
from train.export import export_pack, pack_meta
from train.hinges import LEAF_PRIOR, hinge_axes, twist_joints
from train.losses import angle_errors, losses
from train.model import ARCHS, IKModel, ModelConfig

DATA_NAME = "Bandai Namco Research Motion Dataset 2"
LICENCE = "weights learned from the Bandai Namco Research Motion Dataset 2 (CC BY-NC 4.0): non-commercial use only"
CORPUS_LICENCE = (
    "weights learned from {} (Bandai Namco Research Motion Dataset 2: CC BY-NC 4.0; the other sources: research "
    "and non-commercial use, see ../shared/mocap/extra/README.md): non-commercial use only"
)


class _Batches(torch.utils.data.IterableDataset):
    def __init__(self, clips, batch, window, seed, aug_cfg, markers=()):
        self.args = (clips, batch, window, seed, aug_cfg, markers)

    def __iter__(self):
        clips, batch, window, seed, aug_cfg, markers = self.args
        streams = Streams(ExampleMaker(clips, aug_cfg, markers=markers), batch, window, seed)
        while True:
            b, reset = streams.next()
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}, torch.from_numpy(reset)


def calibrate(model: IKModel, clips: ClipSet, n: int = 4000, seed: int = 0) -> dict:
    """Fit the model's frame weights and offsets on ``n`` frames of ``clips``."""
    from rtik.geometry import rotations as rot
    from rtik.geometry.kinematics import forward_kinematics

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(clips.num_frames, size=min(n, clips.num_frames), replace=False))
    P = np.empty(idx.shape + clips.quats.shape[1:-1] + (3,))
    Gq = np.empty(idx.shape + clips.quats.shape[1:])
    clip = np.searchsorted(clips.starts, idx, side="right") - 1  # each clip's frames through its own body
    for c in np.unique(clip):
        sel = clip == c
        P[sel], Gq[sel] = forward_kinematics(
            clips.skeleton_of(int(c)), clips.quats[idx[sel]].astype(np.float64), root_pos=clips.root[idx[sel]]
        )
    keep = model.rig.skel_index
    return model.calibrate(P[:, keep], rot.quat_to_matrix(Gq[:, keep]))


@torch.no_grad()
def validate(model: IKModel, clips: ClipSet, n_clips: int = 24, window: int = 128) -> dict:
    """Mean local/global geodesic error (degrees) per joint group on clean, un-augmented val clips (joints
    only: a model with markers gets none of them here)."""
    from rtik.geometry.skeleton import GROUPS

    maker = ExampleMaker(clips, _augment_config("none"), markers=model.cfg.markers)
    rng = np.random.default_rng(123)
    errs = {"global": [], "local": []}
    was = model.training
    model.eval()
    for i in np.linspace(0, len(clips) - 1, min(n_clips, len(clips))).astype(int):
        ex = maker.make(int(i), rng)
        b = {k: torch.from_numpy(np.ascontiguousarray(v[None, :window])) for k, v in ex.items()}
        out = model(b["pos"], b["mask"])
        e = angle_errors(out["G"], out["L"], b)
        for k in errs:
            errs[k].append(e[k])
    model.train(was)
    groups = [model.skeleton.group(j) for j in model.rig.skel_index]
    res = {}
    for k, v in errs.items():
        per = torch.stack(v).mean(0).numpy()
        res[f"{k}_mean"] = float(per.mean())
        for g in GROUPS:
            sel = [i for i, gg in enumerate(groups) if gg == g]
            if sel:
                res[f"{k}_{g}"] = float(per[sel].mean())
    return res


def _markers(spec: str) -> tuple[str, ...]:
    from rtik.formats.markers import NAMES

    if spec == "all":
        return NAMES
    names = tuple(m for m in spec.split(",") if m and m != "none")
    unknown = [m for m in names if m not in NAMES]
    if unknown:
        raise SystemExit(f"--markers: unknown {', '.join(unknown)}; valid: all, none, {', '.join(NAMES)}")
    return names


def _augment_config(which: str) -> AugmentConfig:
    if which == "full":
        return AugmentConfig()
    return AugmentConfig(
        mirror=0, mix_upper=0, perturb=0, rates=(1,), rate_p=(1.0,), speed=(1.0, 1.0), warp=0.0, bones=0,
        noise=0, occlude=0, outliers=0, mid_start=0, markers_none=1.0,
    )  # fmt: skip


def _plot(log: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    steps = [r["step"] for r in log if "total" in r]
    for k in ("total", "rot", "fk", "den"):
        ax[0].plot(steps, [r[k] for r in log if "total" in r], label=k)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step")
    ax[0].legend()
    val = [r for r in log if "val_local_mean" in r]
    for k in ("val_local_mean", "val_local_limb", "val_local_leaf", "val_global_mean"):
        ax[1].plot([r["step"] for r in val], [r[k] for r in val], label=k, marker=".")
    ax[1].set_ylabel("degrees")
    ax[1].set_xlabel("step")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


_window = int_at_least(2, "frames")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m train.fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="BVH folder or .tar.xz of one rig, split by take "
                    "(default: the corpus of every source)")  # fmt: skip
    ap.add_argument("--sources", default="", help="comma-separated corpus sources (default: all; see train.corpus)")
    ap.add_argument("--exclude-source", default="", help="comma-separated sources left out (leave-source-out)")
    ap.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log, plot, pack)")
    ap.add_argument("--exclude-content", default="", help="comma-separated contents left out of training")
    ap.add_argument("--minutes", type=float, default=30.0, help="training time budget (wall clock)")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = time budget only)")
    ap.add_argument("--hidden", type=int, default=ModelConfig.hidden, help="IK GRU width")
    ap.add_argument("--layers", type=int, default=ModelConfig.layers, help="IK GRU layers")
    ap.add_argument("--den-hidden", type=int, default=ModelConfig.den_hidden, help="denoiser GRU width")
    ap.add_argument("--arch", default="gru", choices=ARCHS, help="IK network: GRU, or feed-forward over a window")
    ap.add_argument("--ff-window", type=_window, default=ModelConfig.ff_window, help="frames seen by --arch ff")
    ap.add_argument("--no-denoiser", action="store_true", help="no denoiser (identity; ablation)")
    ap.add_argument("--markers", default="all",
                    help="leaf markers the model takes: all, none, or a comma list (rtik.formats.markers)")  # fmt: skip
    ap.add_argument("--no-fk-loss", action="store_true", help="drop the FK position loss term (ablation)")
    ap.add_argument("--batch", type=int, default=32, help="streams per batch (per rank)")
    ap.add_argument("--window", type=int_at_least(4, "frames"), default=64, help="frames per truncated-BPTT window")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay over the budget)")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank (more than the free cores stalls)")
    ap.add_argument("--workers", type=int, default=1, help="data worker processes (0 = in the main process)")
    ap.add_argument("--val-every", type=float, default=3.0, help="minutes between validation and checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this checkpoint's weights (same sizes; one without markers gets its marker "
                    "inputs at zero), with a fresh optimiser and schedule")  # fmt: skip
    ap.add_argument("--train-split", default="train", choices=("train", "all"), help="clips to train on")
    ap.add_argument("--augment", default="full", choices=("full", "none"), help="augmentation (none: for tests)")
    ap.add_argument("--no-export", action="store_true", help="do not write a model pack at the end")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    exclude = tuple(s for s in args.exclude_content.split(",") if s)
    ex_src = tuple(s for s in args.exclude_source.split(",") if s)
    if args.data is not None:
        if args.sources or ex_src:
            raise SystemExit("--sources and --exclude-source choose corpus sources: give them without --data")
        clips = load_clips(args.data, progress=rank == 0)
    else:
        from train.corpus import load_corpus

        clips = load_corpus([s for s in args.sources.split(",") if s], ex_src, progress=rank == 0)
    train, val = clips.split(args.train_split, exclude), clips.split("val", exclude)
    sizes = (args.hidden, args.layers, args.den_hidden)
    cfg = ModelConfig(*sizes, arch=args.arch, ff_window=args.ff_window, denoiser=not args.no_denoiser,
                      markers=_markers(args.markers))  # fmt: skip
    loss_weights = {"fk": 0.0} if args.no_fk_loss else None
    model = IKModel(clips.skeleton, cfg)
    calibrate(model, train)
    prior = mean_local_rotations(train.quats[:: max(1, train.num_frames // 50000)])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, elapsed, log = 0, 0.0, []
    ck_path = out / "last.pt"
    if args.init is not None and not (args.resume and ck_path.is_file()):
        ck = torch.load(args.init, map_location="cpu", weights_only=False)
        if ModelConfig(**{**ck["config"], "markers": cfg.markers}) != cfg:
            raise SystemExit(f"--init {args.init}: its sizes {ck['config']} differ from this run's {cfg.to_dict()}")
        if list(ck["config"].get("markers", [])) == list(cfg.markers):
            model.load_state_dict(ck["model"])
        else:
            model.load_without_markers(ck["model"])
    if args.resume and ck_path.is_file():
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, log = ck["step"], ck["elapsed"], ck["log"]
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    data = torch.utils.data.DataLoader(
        _Batches(
            train, args.batch, args.window, args.seed * 1000 + rank + step, _augment_config(args.augment), cfg.markers
        ),  # fmt: skip
        batch_size=None,
        num_workers=args.workers,
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
    )
    command = shlex.join(["python", "-m", "train.fit", *(sys.argv[1:] if argv is None else argv)])
    budget = args.minutes * 60.0
    bar = None
    if rank == 0 and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=int(budget), unit="s", initial=int(elapsed), desc="training")
    state = torch.zeros(args.batch, model.state_size)
    t_start, last_val, stop = time.time() - elapsed, time.time(), False
    it = iter(data)
    warmup = min(200, max(1, args.steps // 10)) if args.steps else 200
    while not stop:
        batch, reset = next(it)
        elapsed = time.time() - t_start
        frac = min(1.0, max(elapsed / budget, step / args.steps if args.steps else 0.0))
        lr = args.lr * (min(1.0, (step + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * frac)) + 0.02)
        for g in opt.param_groups:
            g["lr"] = lr
        state = state * (~reset)[:, None].float()
        res = net(batch["pos"], batch["mask"], state)
        terms = losses(res, batch, model.rig.parent, loss_weights)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = res["state"].detach()
        step += 1
        stop = frac >= 1.0 or (args.steps and step >= args.steps)
        if world > 1:
            flag = torch.tensor([float(stop)])
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if rank != 0:
            continue
        if step % 10 == 0 or args.steps:
            log.append({"step": step, "time": elapsed, "lr": lr, **{k: float(v.detach()) for k, v in terms.items()}})
        if bar is not None:
            bar.n = int(elapsed)
            bar.set_postfix(step=step, loss=f"{float(terms['total']):.3f}")
        if time.time() - last_val > args.val_every * 60 or stop:
            last_val = time.time()
            v = validate(model, val)
            log.append({"step": step, "time": elapsed, **{f"val_{k}": x for k, x in v.items()}})
            print(json.dumps(log[-1]), flush=True)
            meta = _meta(model, prior, train, command, exclude, v, ex_src)
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed, "log": log,
                 "config": cfg.to_dict(), "skeleton": model.skeleton.to_dict(), "meta": meta},
                ck_path,
            )  # fmt: skip
            (out / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
            _plot(log, out / "loss.png")
    if bar is not None:
        bar.close()
    if rank == 0 and not args.no_export:
        pack = export_pack(model, out / "pack", _meta(model, prior, train, command, exclude, v, ex_src))
        print(f"wrote {pack.path}")
    if world > 1:
        torch.distributed.destroy_process_group()
    return 0


def _code_version() -> str:
    """Commit of the training code, ``-dirty`` when ``train/`` or the normalisation has uncommitted changes."""
    import subprocess

    here = Path(__file__).resolve().parent

    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=here, capture_output=True, text=True, timeout=10, check=True)

    try:
        head = git("rev-parse", "--short", "HEAD").stdout.strip()
        norm = here.parent / "rtik" / "models" / "normalize.py"
        dirty = git("status", "--porcelain", "--", str(here), str(norm)).stdout
        return head + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _meta(model, prior, train, command, exclude, val_metrics, exclude_source=()) -> dict:
    left_out = (*exclude, *exclude_source)
    name = "rtik-default" if not left_out else f"rtik-without-{'-'.join(left_out)}"
    data, split, licence = DATA_NAME, "train (take % 10 != 0)", LICENCE
    if train.sources:  # the multi-source corpus
        names = sorted(set(train.sources))
        data = "corpus: " + ", ".join(names)
        split = "train (Bandai: take % 10 != 0; other sources: families outside the val hash)"
        split += f", without source {', '.join(exclude_source)}" if exclude_source else ""
        licence = CORPUS_LICENCE.format(", ".join(names))
    return pack_meta(
        model,
        name,
        prior_local=prior,
        fps=float(train.fps),
        training={
            "command": command,
            "data": data,
            "split": split + (f", without content {', '.join(exclude)}" if exclude else ""),
            "clips": len(train),
            "frames": train.num_frames,
            "code": _code_version(),
        },
        metrics={"val_clean_quick": val_metrics},
        licence=licence,
        hinges=hinge_axes(train.quats, train.skeleton, stride=max(1, train.num_frames // 200_000))[0],
        twist_prior=twist_joints(model.skeleton),
        leaf_prior=LEAF_PRIOR,
    )


if __name__ == "__main__":
    sys.exit(main())
