"""Command-line options of the trainers, kept free of torch so `despite --help` and the data
commands start fast (and work where only the offline data half is installed)."""
from __future__ import annotations

import argparse
from pathlib import Path

from despite_core.presets import PRESETS


def pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, help="sequence store to train on (required)")
    p.add_argument("--out", type=Path, help="run directory: checkpoints, log.jsonl, config (required)")
    p.add_argument("--preset", default="DeSPITE", choices=list(PRESETS), help="modality subset")
    p.add_argument("--list-presets", action="store_true", help="list the presets and their loss pairs, then exit")
    p.add_argument("--split-scheme", default="by_subject", help="split scheme of the store")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val", help="split for the validation loss ('' to skip)")
    p.add_argument("--epochs", type=int, default=145, help="paper: 145")
    p.add_argument("--batch-size", type=int, default=1024, help="global batch (split across ranks); paper: 1024")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--stride", type=int, default=1, help="window stride in frames (reference: 1)")
    p.add_argument("--max-windows", type=int, default=None, help="subsample the training windows (CPU budgets)")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--learnable-temperature", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=5, help="save every K epochs (and the last)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per rank")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per rank")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true",
                   help="a reduced model for CPU budgets (PST depth 2, skeleton 2 layers x 256, IMU hidden 256)")
    p.add_argument("--imu-norm", action="store_true",
                   help="standardise each IMU channel by the training data's mean and spread (kept in the model "
                        "and its ONNX graph)")
    p.add_argument("--imu-gyro", action="store_true",
                   help="also feed the IMUs' angular rate where the store has it (LIPD's 4 sites: 60 channels, not 48)")
    p.add_argument("--quiet", action="store_true")


def har_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--modality", default="pointcloud", choices=("pointcloud", "imu", "skeleton"))
    p.add_argument("--init", type=Path, default=None,
                   help="pre-training checkpoint (last.pt), or a model bundle directory (e.g. models/default: its "
                        "encoders' weights are recovered from the ONNX parts, and its head too when the classes and "
                        "--head match); default: from scratch")
    p.add_argument("--test-store", type=Path, default=None,
                   help="score on this store instead (e.g. held-out recordings imported apart): its --test-split, "
                        "or every sequence with --test-split all; class names must equal --store's")
    p.add_argument("--freeze", action="store_true", help="train only the head (linear probe), not the encoder")
    p.add_argument("--loss-classes", default="auto", choices=("auto", "all", "seen"),
                   help="classes the training loss normalises over: all, or seen (only those with a training "
                        "window: a fine-tune on a few minutes that lack some activities leaves the head's other "
                        "classes alone instead of teaching it that they never happen); auto = seen when the head "
                        "comes from --init, all otherwise")
    p.add_argument("--head", default="linear", choices=("linear", "mlp"),
                   help="linear, or the reference's small MLP (LayerNorm, 256, GELU, dropout 0.1)")
    p.add_argument("--fresh-head", action="store_true",
                   help="with a bundle as --init: start a new head instead of the bundle's own (its encoders only; "
                        "how bench/default_model_v2.sh trains the default bundle's heads reproducibly)")
    p.add_argument("--body-motion", action="store_true",
                   help="point clouds: the head also takes the window's body motion (the centroid's height change and "
                        "travel, the cloud's height and width per frame: what the per-frame centring hides), "
                        "standardised by the training windows' statistics; the bundle's head then declares a "
                        "body_motion input that the runtime fills from the track's raw clouds")
    p.add_argument("--align-imu", type=float, default=0.0, metavar="WEIGHT",
                   help="point clouds fine-tuned from an --init with an IMU encoder: add WEIGHT x the InfoNCE between "
                        "each window's point-cloud embedding and the init's frozen IMU encoder's embedding of the same "
                        "window (the pre-training's sensor term; its beta is 0.5), so the fine-tuned encoder can "
                        "replace the matching encoder in a bundle: one encoder for labels and wearer matching, no "
                        "extra cost per frame. 0: labels only (the embedding drifts; matching must be re-measured)")
    p.add_argument("--label-fraction", type=float, default=1.0, help="fraction of labelled training windows used")
    p.add_argument("--split-scheme", default="by_subject")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--epochs", type=int, default=35, help="reference: 35")
    p.add_argument("--batch-size", type=int, default=24, help="reference: 24")
    p.add_argument("--lr", type=float, default=0.01, help="the head's peak learning rate (SGD, momentum 0.9)")
    p.add_argument("--encoder-lr", type=float, default=None,
                   help="the encoder's peak learning rate (same schedule); default: --lr. Fine-tuning a "
                        "pre-trained encoder on a few minutes wants it far below --lr: 3e-05 with --lr 0.01 "
                        "(chosen on development recordings: the README's 'Train on your own recordings')")
    p.add_argument("--warmup-epochs", type=int, default=None, help="default: epochs / 3.5 (reference: 10 of 35)")
    p.add_argument("--stride", type=int, default=1, help="training window stride")
    p.add_argument("--eval-stride", type=int, default=2, help="test window stride")
    p.add_argument("--val-split", default="auto",
                   help="split of --split-scheme scored after every epoch (val_accuracy, val_macro_f1 in OUT/log.jsonl "
                        "and OUT/curves.png; windows at stride max(--eval-stride, 4)): auto = 'val' when the scheme "
                        "has it, '' = none")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT/last.pt (written after every epoch), with the same "
                        "options: the result equals the uninterrupted run's")
    p.add_argument("--small", action="store_true", help="the reduced model (scratch only; --init brings its own)")
    p.add_argument("--imu-norm", action="store_true",
                   help="scratch IMU models: standardise each IMU channel by the training data's mean and spread "
                        "(kept in the model and its ONNX graph; --init brings its own)")
    p.add_argument("--imu-gyro", action="store_true",
                   help="scratch IMU models: also feed the angular rate where the store has it (LIPD's 4 sites: 60 "
                        "channels instead of 48; --init brings its own layout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
