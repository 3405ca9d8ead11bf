"""The bad-input table (docs/errors.md): one row per thing a user can type or point at wrongly.

Every row runs the real CLI entry point (`reuse_console.tui.cli.main`, in-process; a few rows
also as a subprocess) against one tiny lab built once for the module, and checks the contract
of issue 7: exit code 2, one line on stderr that says what is wrong (the row's fragment), no
traceback, and the lab unchanged (every file's path, size, mtime and sha256, hidden files included).
The order of ROWS is the order of the table in docs/errors.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

NAN_KEY = "enc1.bn1.running_var"  # the tensor the NaN checkpoint and the NaN .pt file spoil (see _spoil)


@dataclass(frozen=True)
class Row:
    id: str
    what: str  # the table's "input" column
    argv: tuple[str, ...]  # {lab} and {root} are filled in at run time
    expect: str  # a fragment of the one line the user sees (case-insensitive)


def row(id: str, what: str, cmd: str, expect: str) -> Row:
    return Row(id, what, tuple(cmd.split()), expect)


L = "--lab {lab}"
ROWS: list[Row] = [
    # -- data import: NIfTI and the import source ------------------------------------------------
    row(
        "nifti-corrupt",
        "corrupt NIfTI file",
        f"data import {{root}}/nifti-corrupt --format folders --name x --size 32 {L}",
        "cannot read NIfTI",
    ),
    row(
        "nifti-truncated",
        "truncated NIfTI (.nii.gz cut short)",
        f"data import {{root}}/nifti-truncated --format folders --name x --size 32 {L}",
        "cannot read NIfTI",
    ),
    row(
        "import-source-file",
        "import source is a file, not a folder",
        f"data import {{root}}/afile.txt --name x --size 32 {L}",
        "not a folder",
    ),
    row(
        "import-source-missing",
        "import source does not exist",
        f"data import {{root}}/nowhere --name x {L}",
        "no such folder",
    ),
    row(
        "import-size-0",
        "--size 0",
        f"data import {{root}}/nifti-good --format folders --name x --size 0 {L}",
        "--size 0",
    ),
    row(
        "import-val-too-many",
        "--val-subjects more than there are",
        f"data import {{root}}/nifti-good --format folders --name x --size 32 --val-subjects 5 {L}",
        "--val-subjects 5",
    ),
    row(
        "import-name-taken",
        "import under an existing data set id",
        f"data import {{root}}/nifti-good --format folders --name toy --size 32 {L}",
        "already exists",
    ),
    row(
        "import-format-unknown",
        "--format that does not exist",
        f"data import {{root}}/nifti-good --format mha --name x --size 32 {L}",
        "unknown format",
    ),
    # -- data import: RVSC and DICOM -------------------------------------------------------------
    row(
        "rvsc-contour-orphan",
        "RVSC contour file naming an image that does not exist",
        f"data import {{root}}/rvsc-orphan/TrainingSet --format rvsc --name x --size 32 {L}",
        "P01-0042-icontour-manual.txt: contour for image P01-0042, which is not in",
    ),
    row(
        "dicom-no-pixels",
        "DICOM image without pixel data",
        f"data import {{root}}/rvsc-nopixels/TrainingSet --format rvsc --name x --size 32 {L}",
        "P01-0001.dcm: DICOM without pixel data",
    ),
    row(
        "dicom-mixed-sizes",
        "DICOM images of different sizes in one volume",
        f"data import {{root}}/rvsc-mixed/TrainingSet --format rvsc --name x --size 32 {L}",
        "P01-0004.dcm: 10x14 image in patient01 ED of 10x12 images",
    ),
    row(
        "dicom-compressed",
        "DICOM compressed (JPEG 2000) with no decoder installed",
        f"data import {{root}}/rvsc-compressed/TrainingSet --format rvsc --name x --size 32 {L}",
        "P01-0001.dcm: compressed transfer syntax JPEG 2000",
    ),
    row(
        "dicom-label-grid",
        "DICOM series with a label NIfTI on another grid",
        f"data import {{root}}/dicom-label-grid --format dicom --name x --size 32 {L}",
        "does not cover the series' grid",
    ),
    # -- lab files: corrupt, truncated, newer schema -------------------------------------------------
    row("h5-junk-show", "corrupt checkpoint file (not HDF5) in show", f"show junk {L}", "junk"),
    row("h5-junk-eval", "corrupt checkpoint file in eval", f"eval junk --data toy {L}", "junk.h5"),
    row("h5-trunc-eval", "truncated checkpoint in eval", f"eval trunc --data toy {L}", "trunc.h5"),
    row(
        "h5-trunc-swap",
        "truncated checkpoint as swap donor",
        f"swap seg trunc --data toy --layers 1 --kinds RM {L}",
        "trunc.h5",
    ),
    row("h5-trunc-rmse", "truncated checkpoint in rmse", f"rmse seg trunc {L}", "trunc.h5"),
    row("h5-trunc-dataset-scan", "truncated data set in scan", f"scan seg ae --data trunc-data {L}", "trunc-data.h5"),
    row("h5-trunc-scan-plan", "truncated scan file in plan", f"plan --scan trunc-scan {L}", "trunc-scan.h5"),
    row("h5-trunc-show", "truncated file in show", f"show trunc-scan {L}", "trunc-scan"),
    row(
        "schema-newer-eval",
        "checkpoint from a newer reuse-console in eval",
        f"eval future --data toy {L}",
        "newer reuse-console",
    ),
    row("schema-newer-show", "newer-schema file in show", f"show future {L}", "newer reuse-console"),
    row(
        "schema-newer-swap",
        "newer-schema checkpoint as swap donor",
        f"swap seg future --data toy --layers 1 --kinds RM {L}",
        "newer reuse-console",
    ),
    row("schema-newer-rmse", "newer-schema checkpoint in rmse", f"rmse seg future {L}", "newer reuse-console"),
    row(
        "schema-newer-dataset",
        "newer-schema data set in scan",
        f"scan seg ae --data future-data {L}",
        "newer reuse-console",
    ),
    row("schema-newer-plan", "newer-schema scan in plan", f"plan --scan future-scan {L}", "newer reuse-console"),
    # -- mismatched architectures -------------------------------------------------------------------
    row(
        "arch-swap-unet-pspnet",
        "swap UNet with PSPNet",
        f"swap seg psp --data toy --layers 1 --kinds RM {L}",
        "same architecture",
    ),
    row(
        "arch-swap-width",
        "swap UNet width 4 with width 8",
        f"swap seg wide --data toy --layers 1 --kinds RM {L}",
        "shape",
    ),
    row(
        "arch-scan-width",
        "scan UNet width 4 with width 8",
        f"scan seg wide --data toy --layers 1 --kinds RM {L}",
        "shape",
    ),
    row("arch-rmse-unet-pspnet", "rmse UNet vs PSPNet", f"rmse seg psp {L}", "one architecture"),
    row("arch-rmse-width", "rmse UNet width 4 vs width 8", f"rmse seg wide {L}", "shape"),
    row("arch-bn-width", "bn UNet width 4 vs width 8", f"bn seg wide {L}", "shape"),
    row("align-same", "align a checkpoint to itself", f"align seg --to seg --data toy {L}", "same checkpoint"),
    row("align-unet-pspnet", "align PSPNet to UNet", f"align psp --to seg --data toy {L}", "same architecture"),
    row("align-width", "align UNet width 8 to width 4", f"align wide --to seg --data toy {L}", "shape"),
    row(
        "align-method",
        "align --method that does not exist",
        f"align seg2 --to seg --method magic {L}",
        "unknown method",
    ),
    row(
        "align-name-taken",
        "align --name of an existing checkpoint",
        f"align seg2 --to seg --data toy --name ae {L}",
        "already exists",
    ),
    row("align-data-missing", "align --data not in the lab", f"align seg2 --to seg --data nope {L}", "nope"),
    row(
        "arch-plan-donor",
        "train --init with a donor of another architecture than the plan",
        f"train --data toy --epochs 1 --arch unet --init psp --plan p1 {L}",
        "pspnet",
    ),
    row(
        "arch-plan-model",
        "train --arch pspnet with a plan made for unet",
        f"train --data toy --epochs 1 --arch pspnet --init seg --plan p1 {L}",
        "made for unet",
    ),
    row(
        "arch-plan-width",
        "train with a donor of another width than the new model",
        f"train --data toy --epochs 1 --init wide --plan pall {L}",
        "wide",
    ),
    row(
        "plan-rmse-other-pair",
        "plan from a scan and a comparison of other models",
        f"plan --scan s1 --rmse c-other --max-rmse 1 {L}",
        "does not compare",
    ),
    # -- NaN / Inf in weights -----------------------------------------------------------------------
    row(
        "nan-ckpt-import-pt",
        "ckpt import of a .pt holding NaN",
        f"ckpt import {{root}}/nan.pt --arch unet --task seg --name x --arch-config {{w4}} {L}",
        NAN_KEY,
    ),
    row(
        "inf-ckpt-import-safetensors",
        "ckpt import of a .safetensors holding Inf",
        f"ckpt import {{root}}/inf.safetensors --arch unet --task seg --name x --arch-config {{w4}} {L}",
        NAN_KEY,
    ),
    row("nan-swap-donor", "swap with a NaN donor", f"swap seg nan --data toy --layers 1 --kinds RM {L}", NAN_KEY),
    row(
        "nan-swap-recipient", "swap with a NaN recipient", f"swap nan seg --data toy --layers 1 --kinds RM {L}", NAN_KEY
    ),
    row("nan-scan-donor", "scan with a NaN donor", f"scan seg nan --data toy --layers 1 --kinds RM {L}", NAN_KEY),
    row("nan-rmse", "rmse with a NaN checkpoint", f"rmse seg nan {L}", NAN_KEY),
    row("nan-eval", "eval of a NaN checkpoint", f"eval nan --data toy {L}", NAN_KEY),
    row(
        "nan-train-donor",
        "train --init from a NaN donor",
        f"train --data toy --epochs 1 --init nan --plan pall {L}",
        NAN_KEY,
    ),
    # -- empty validation split ----------------------------------------------------------------------
    row(
        "noval-scan",
        "scan on a data set with no validation subjects",
        f"scan seg ae --data noval {L}",
        "no val subjects",
    ),
    row(
        "noval-swap",
        "swap on a data set with no validation subjects",
        f"swap seg ae --data noval --layers 1 --kinds RM {L}",
        "no val subjects",
    ),
    row(
        "noval-eval", "eval on a data set with no validation subjects", f"eval seg --data noval {L}", "no val subjects"
    ),
    row("split-unknown", "--split that does not exist", f"eval seg --data toy --split test {L}", "unknown split"),
    # -- data set without the classes a model or plan needs -------------------------------------------
    row("classes-eval", "eval on a data set with other classes", f"eval seg --data twoclass {L}", "classes"),
    row("classes-scan", "scan on a data set with other classes", f"scan seg ae --data twoclass {L}", "classes"),
    row(
        "classes-plan-nofg",
        "plan from a scan whose data set labels no foreground class",
        f"plan --scan s-nofg {L}",
        "no present foreground class",
    ),
    row(
        "classes-train-plan",
        "train --plan reusing the head on a data set with other classes",
        f"train --data twoclass --epochs 1 --arch-config {{w4}} --init seg --plan pall {L}",
        "classes",
    ),
    # -- unknown ids ----------------------------------------------------------------------------------
    row("id-show", "unknown id in show", f"show nope {L}", "no object 'nope'"),
    row("id-eval", "unknown checkpoint in eval", f"eval nope --data toy {L}", "no checkpoint 'nope'"),
    row(
        "id-swap-donor",
        "unknown donor in swap",
        f"swap seg nope --data toy --layers 1 --kinds RM {L}",
        "no checkpoint 'nope'",
    ),
    row("id-scan-data", "unknown data set in scan", f"scan seg ae --data nope {L}", "'nope'"),
    row("id-train-data", "unknown data set in train", f"train --data nope --epochs 1 {L}", "'nope'"),
    row("id-train-plan", "unknown plan in train", f"train --data toy --epochs 1 --init seg --plan nope {L}", "'nope'"),
    row("id-rmse", "unknown checkpoint in rmse", f"rmse seg nope {L}", "no checkpoint 'nope'"),
    row("id-plan-show", "unknown plan in plan show", f"plan show nope {L}", "'nope'"),
    row("id-plan-scan", "unknown scan in plan", f"plan --scan nope {L}", "'nope'"),
    row("id-report", "unknown id in report", f"report nope --out {{root}}/figs {L}", "'nope'"),
    row("id-export", "unknown checkpoint in ckpt export", f"ckpt export nope --out {{root}}/x.pt {L}", "'nope'"),
    row("id-jobs-show", "unknown job", f"jobs show nope {L}", "nope"),
    row("id-resume", "train --resume of a run that does not exist", f"train --resume nope {L}", "nope"),
    row("id-invalid", "an id with characters ids cannot have", f"show a%b {L}", "invalid name"),
    row("kind-unknown", "ls of a kind that does not exist", f"ls widgets {L}", "unknown kind"),
    # -- layer ranges, kinds, alphas -------------------------------------------------------------------
    row("layers-range-text", "--layers 3-x", f"swap seg ae --data toy --layers 3-x --kinds RM {L}", "3-x"),
    row(
        "layers-out-of-range",
        "--layers 40 (UNet has 18)",
        f"swap seg ae --data toy --layers 40 --kinds RM {L}",
        "no layer 40",
    ),
    row("layers-range-reversed", "--layers 5-2", f"scan seg ae --data toy --layers 5-2 {L}", "bad layer range"),
    row("layers-range-zero", "--layers 0-3", f"rmse seg ae --layers 0-3 {L}", "bad layer range"),
    row("layers-empty-item", "--layers 1,,2", f"scan seg ae --data toy --layers 1,,2 {L}", "empty item"),
    row("layers-empty", "--layers ''", f"swap seg ae --data toy --layers '' --kinds RM {L}", "empty layer selection"),
    row("kinds-unknown", "--kinds QQ", f"swap seg ae --data toy --layers 1 --kinds QQ {L}", "unknown kind 'QQ'"),
    row(
        "kinds-none-in-layer",
        "--kinds RM on a layer without BN (head)",
        f"swap seg ae --data toy --layers head --kinds RM {L}",
        "nothing to swap",
    ),
    row(
        "alpha-range", "--alpha 1.5", f"swap seg ae --data toy --layers 1 --kinds RM --alpha 1.5 {L}", "outside [0, 1]"
    ),
    row("alpha-nan", "--alpha nan", f"swap seg ae --data toy --layers 1 --kinds RM --alpha nan {L}", "outside [0, 1]"),
    row("alphas-text", "--alphas 0,x", f"scan seg ae --data toy --alphas 0,x {L}", "bad alpha 'x'"),
    row("alphas-range", "--alphas 2", f"scan seg ae --data toy --alphas 2 {L}", "outside [0, 1]"),
    row("recalibrate-0", "--recalibrate 0", f"scan seg ae --data toy --recalibrate 0 {L}", "--recalibrate must be"),
    row("pairs-one", "scan --pairs with one pair", f"scan --pairs seg:ae --data toy {L}", "at least two"),
    row("pairs-item", "scan --pairs item without a colon", f"scan --pairs seg:ae,segae --data toy {L}", "--pairs item"),
    row(
        "recalibrate-scope",
        "--recalibrate-scope that does not exist",
        f"swap seg ae --data toy --layers 1 --kinds RM --recalibrate 2 --recalibrate-scope up {L}",
        "unknown --recalibrate-scope 'up'",
    ),
    row("confirm-fp32", "scan --confirm on an fp32 scan", f"scan seg ae --data toy --confirm 0.02 {L}", "fp32 already"),
    row(
        "confirm-at",
        "scan --confirm-at that is not a list of drops",
        f"scan seg ae --data toy --precision bf16 --confirm 0.02 --confirm-at 5% {L}",
        "--confirm-at '5%'",
    ),
    row(
        "cache-mb-0", "scan --cache-mb 0", f"scan seg ae --data toy --layers 1 --kinds RM --cache-mb 0 {L}", "positive"
    ),
    row(
        "cache-mb-small",
        "scan --cache-mb below one slice's activations",
        f"scan seg ae --data toy --layers 1 --kinds RM --cache-mb 0.001 {L}",
        "one slice alone needs",
    ),
    row(
        "stack-0", "scan --stack 0", f"scan seg ae --data toy --layers 1 --kinds RM --stack 0 {L}", "at least 1 (got 0)"
    ),
    # -- options out of range ---------------------------------------------------------------------------
    row("train-epochs-0", "train --epochs 0", f"train --data toy --epochs 0 {L}", "--epochs"),
    row("train-batch-0", "train --batch 0", f"train --data toy --epochs 1 --batch 0 {L}", "--batch"),
    row("train-size-0", "train --size 0", f"train --data toy --epochs 1 --size 0 {L}", "--size"),
    row("train-lr-negative", "train --lr -1", f"train --data toy --epochs 1 --lr -1 {L}", "--lr"),
    row("train-depth-0", "train --depth 0", f"train --data toy --epochs 1 --depth 0 {L}", "--depth"),
    row(
        "train-recalibrate-no-init",
        "train --recalibrate without a donor",
        f"train --data toy --epochs 1 --recalibrate 2 {L}",
        "goes with --init",
    ),
    row(
        "train-depth-3d",
        "train a 3D model with a --depth its downsampling cannot take",
        "train --data toy --epochs 1 --arch monai.networks.nets:UNet --arch-config "
        f'{{{{"spatial_dims":3,"channels":[4,8],"strides":[2]}}}} --depth 3 {L}',
        "--size and --depth with sizes it keeps",
    ),
    row("train-task", "train --task that does not exist", f"train --data toy --epochs 1 --task cls {L}", "cls"),
    row(
        "train-mode",
        "train --mode that does not exist",
        f"train --data toy --epochs 1 --init seg --plan p1 --mode thaw {L}",
        "thaw",
    ),
    row(
        "train-arch",
        "train --arch that does not exist",
        f"train --data toy --epochs 1 --arch vgg {L}",
        "unknown architecture",
    ),
    row(
        "arch-config-json",
        "--arch-config that is not JSON",
        f"train --data toy --epochs 1 --arch-config {{{{x {L}",
        "not valid JSON",
    ),
    row("device-unknown", "--device that does not exist", f"eval seg --data toy --device tpu {L}", "tpu"),
    row("precision-unknown", "--precision that does not exist", f"eval seg --data toy --precision fp8 {L}", "fp8"),
    row("max-dice-drop-negative", "plan --max-dice-drop -1", f"plan --scan s1 --max-dice-drop -1 {L}", ">= 0"),
    row("plan-combine", "plan --combine xor", f"plan --scan s1 --rmse c1 --max-rmse 1 --combine xor {L}", "xor"),
    row(
        "plan-mixed-empty",
        "plan from scans counted with other --empty rules",
        f"plan --scan s1 --scan s1-ignore {L}",
        "count Dice differently",
    ),
    # -- study TOML --------------------------------------------------------------------------------------
    row("study-syntax", "study TOML with a syntax error", f"grid {{root}}/study-syntax.toml {L}", "not valid TOML"),
    row(
        "study-unknown-key",
        "study TOML with an unknown key",
        f"grid {{root}}/study-unknown.toml {L}",
        "unknown field 'epoch'",
    ),
    row("study-wrong-type", "study TOML with a wrong type", f"grid {{root}}/study-type.toml {L}", "epochs"),
    row(
        "study-bool-number", "study TOML with true where a number goes", f"grid {{root}}/study-bool.toml {L}", "epochs"
    ),
    row("study-no-source", "study TOML without [[sources]]", f"grid {{root}}/study-nosource.toml {L}", "sources"),
    row(
        "study-half-source",
        "study source with a donor but no plan",
        f"grid {{root}}/study-halfsource.toml {L}",
        "needs both donor and plan",
    ),
    row("study-not-utf8", "study file that is not UTF-8 text", f"grid {{root}}/study-binary.toml {L}", "UTF-8"),
    row("study-missing", "study file that does not exist", f"grid {{root}}/nowhere.toml {L}", "not found"),
    row(
        "study-unknown-target",
        "study whose target data set is not in the lab",
        f"grid {{root}}/study-target.toml {L}",
        "'nope'",
    ),
    row(
        "study-empty-rule", "study whose empty rule does not exist", f"grid {{root}}/study-empty.toml {L}", "empty must"
    ),
    row("plan-toml-syntax", "plan TOML with a syntax error", f"plan import {{root}}/study-syntax.toml {L}", "TOML"),
    # -- paths that are not directories ------------------------------------------------------------------
    row("lab-is-file-ls", "--lab pointing at a file (ls)", "ls --lab {root}/afile.txt", "not a folder"),
    row(
        "lab-is-file-eval",
        "--lab pointing at a file (eval)",
        "eval seg --data toy --lab {root}/afile.txt",
        "not a folder",
    ),
    row(
        "lab-is-file-import",
        "--lab pointing at a file (data import)",
        "data import {root}/nifti-good --format folders --name x --size 32 --lab {root}/afile.txt",
        "not a folder",
    ),
    row(
        "report-out-file", "report --out pointing at a file", f"report s1 --out {{root}}/afile.txt {L}", "not a folder"
    ),
    row(
        "phantom-out-file",
        "data phantom --out pointing at a file",
        "data phantom --out {root}/afile.txt --subjects 1 --scale 0.25",
        "afile.txt",
    ),
    row(
        "export-out-dir",
        "ckpt export --out pointing at a folder",
        f"ckpt export seg --out {{root}}/nifti-good --format pt --force {L}",
        "is a folder",
    ),
    row(
        "plan-export-out-dir",
        "plan export --out pointing at a folder",
        f"plan export p1 --out {{root}}/nifti-good --force {L}",
        "is a folder",
    ),
    row(
        "predictions-out-file",
        "eval --save-predictions pointing at a file",
        f"eval seg --data toy --save-predictions {{root}}/afile.txt {L}",
        "afile.txt",
    ),
    row("eval-empty-unknown", "eval --empty that is no rule", f"eval seg --data toy --empty zero {L}", "--empty zero"),
    row("eval-per-unknown", "eval --per that is no unit", f"eval seg --data toy --per frame {L}", "--per frame"),
    row("eval-grid-unknown", "eval --grid that is no grid", f"eval seg --data toy --grid native {L}", "--grid native"),
    row(
        "scan-empty-unknown", "scan --empty that is no rule", f"scan seg ae --data toy --empty zero {L}", "--empty zero"
    ),
    row(
        "swap-per-unknown",
        "swap --per that is no unit",
        f"swap seg ae --data toy --layers 1 --kinds RM --per frame {L}",
        "--per frame",
    ),
    row(
        "scan-per-no-volumes",
        "scan --per volume on a data set that records no volumes",
        f"scan seg ae --data toy --per volume {L}",
        "records no volumes",
    ),
    # -- cka --------------------------------------------------------------------------------------------
    row("cka-one", "cka with one checkpoint", f"cka seg --data toy {L}", "at least two"),
    row("cka-id", "unknown checkpoint in cka", f"cka seg nope --data toy {L}", "no checkpoint 'nope'"),
    row("cka-arch", "cka UNet vs PSPNet", f"cka seg psp --data toy {L}", "one architecture"),
    row("cka-data", "unknown data set in cka", f"cka seg ae --data nope {L}", "'nope'"),
    row(
        "cka-noval", "cka on a data set with no validation subjects", f"cka seg ae --data noval {L}", "no val subjects"
    ),
    row(
        "cka-features", "cka --features that does not exist", f"cka seg ae --data toy --features flat {L}", "--features"
    ),
    row("cka-memory", "cka --memory-mb 0", f"cka seg ae --data toy --memory-mb 0 {L}", "--memory-mb 0"),
    # -- predict and plan --from: predictors of the swap drop ------------------------------------
    row(
        "predict-measure",
        "predict --measures that does not exist",
        f"predict s1 --measures magic {L}",
        "unknown measure 'magic'",
    ),
    row("predict-few", "predict a scan of fewer than 3 single-tensor swaps", f"predict s1 {L}", "needs 3 or more"),
    row("predict-drop", "predict --max-dice-drop -1", f"predict s1 --max-dice-drop -1 {L}", ">= 0"),
    row(
        "predict-recalibrated",
        "predict --recalibrated on a scan run without --recalibrate",
        f"predict s1 --recalibrated {L}",
        "not scanned with --recalibrate",
    ),
    row("plan-from-threshold", "plan --from without --threshold", f"plan --scan s1 --from rmse {L}", "go together"),
    row(
        "plan-from-measure",
        "plan --from a measure that does not exist",
        f"plan --scan s1 --from magic --threshold 1 {L}",
        "unknown --from 'magic'",
    ),
    # -- --threads on every command that runs torch ---------------------------------------------
    row("threads-0-train", "train --threads 0", f"train --data toy --epochs 1 --threads 0 {L}", "--threads must be"),
    row(
        "threads-neg-train",
        "train --threads -1",
        f"train --data toy --epochs 1 --threads -1 {L}",
        "at least 1 (got -1)",
    ),
    row("threads-0-eval", "eval --threads 0", f"eval seg --data toy --threads 0 {L}", "at least 1 (got 0)"),
    row("threads-neg-eval", "eval --threads -1", f"eval seg --data toy --threads -1 {L}", "at least 1 (got -1)"),
    row(
        "threads-0-swap",
        "swap --threads 0",
        f"swap seg ae --data toy --layers 1 --kinds RM --threads 0 {L}",
        "at least 1 (got 0)",
    ),
    row("threads-0-scan", "scan --threads 0", f"scan seg ae --data toy --threads 0 {L}", "at least 1 (got 0)"),
    row("threads-neg-scan", "scan --threads -1", f"scan seg ae --data toy --threads -1 {L}", "at least 1 (got -1)"),
    row("threads-0-grid", "grid --threads 0", f"grid {{root}}/study-ok.toml --threads 0 {L}", "at least 1 (got 0)"),
    row("threads-0-rmse", "rmse --threads 0", f"rmse seg ae --threads 0 {L}", "at least 1 (got 0)"),
    row("threads-neg-bn", "bn --threads -1", f"bn seg ae --threads -1 {L}", "at least 1 (got -1)"),
    row("threads-0-demo", "demo --threads 0", f"demo --quick --no-console --threads 0 {L}", "at least 1 (got 0)"),
    # -- cluster executors (docs/cluster.md) ------------------------------------------------------------
    row(
        "executor-unknown",
        "grid --executor that does not exist",
        f"grid {{root}}/study-ok.toml --executor pbs {L}",
        "local, slurm, ray",
    ),
    row(
        "executor-field-unknown",
        "study [executor] table with an unknown field",
        f"grid {{root}}/study-executor-field.toml {L}",
        "unknown field 'partiton'",
    ),
    row(
        "executor-value-bad",
        "study [executor] table with cpus_per_task = 0",
        f"grid {{root}}/study-executor-cpus.toml {L}",
        "cpus_per_task must be a whole number >= 1",
    ),
    row(
        "executor-lab-shared",
        "grid --executor slurm on a lab folder others can write (no sticky bit)",
        "grid {root}/study-ok.toml --executor slurm --lab {root}/lab-shared",
        "writable by other users",
    ),
    row("grid-cell-not-json", "grid-cell --spec that is not JSON", f"grid-cell --spec not-json {L}", "is not JSON"),
    row(
        "grid-cell-wrong-name",
        "grid-cell --spec whose name is not its content's",
        f'grid-cell --spec {{{{"data":"toy","name":"cell-0000000000000000"}}}} {L}',
        "but its content names it",
    ),
    row(
        "grid-cancel-local",
        "grid --cancel of a grid that never ran on a cluster",
        f"grid {{root}}/study-ok.toml --cancel {L}",
        "has no cluster status",
    ),
]


# --------------------------------------------------------------------------------------------------
# The lab, built once per module
# --------------------------------------------------------------------------------------------------


def _slices(name: str, *, split: list[str], classes: list[str] | None = None, fg: bool = True):
    from swap_lab import CLASSES, blobs

    from reuse_console.engine.data.slices import SliceSet

    rng = np.random.default_rng(0)
    subjects, per = len(split), 3
    images, labels = blobs(subjects * per, 64, rng)
    classes = classes or list(CLASSES)
    present = [True] * len(classes)
    if len(classes) == 2:  # background + MYO only
        labels = (labels == 2).astype(np.uint8)
    if not fg:
        labels[:] = 0
        present = [True] + [False] * (len(classes) - 1)
    return SliceSet(
        name=name,
        images=images,
        labels=labels,
        subject=np.repeat(np.arange(subjects, dtype=np.int32), per),
        subjects=[f"patient{i:03d}" for i in range(subjects)],
        split=split,
        classes=classes,
        present=present,
        spacing=(1.5, 1.5),
    )


def _spoil(lab, name: str, value: float) -> None:
    """Checkpoint `name`: a copy of seg with NAN_KEY set to `value`."""
    from reuse_console.engine.models.registry import load_model, save_model

    model, meta = load_model(lab, "seg")
    with __import__("torch").no_grad():
        model.state_dict()[NAN_KEY].fill_(value)
    save_model(lab, name, model, meta)


def _copy_with_schema(src: Path, dest: Path, schema: int) -> None:
    import h5py

    shutil.copyfile(src, dest)
    with h5py.File(dest, "r+") as f:
        f.attrs["schema"] = schema


def _truncate(src: Path, dest: Path) -> None:
    data = src.read_bytes()
    dest.write_bytes(data[: len(data) // 2])


def _nifti_folder(root: Path, mode: str = "good") -> Path:
    """A 'folders' layout with 2 subjects of 32x32x3 volumes; one image spoilt per `mode`."""
    import nibabel as nib

    folder = root / f"nifti-{mode}"
    rng = np.random.default_rng(0)
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
    for i in range(2):
        img = rng.normal(size=(32, 32, 3)).astype(np.float32)
        lab = (rng.random((32, 32, 3)) > 0.7).astype(np.uint8) * 3
        nib.save(nib.Nifti1Image(img, np.eye(4)), folder / "images" / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(lab, np.eye(4)), folder / "labels" / f"case{i}.nii.gz")
    victim = folder / "images" / "case1.nii.gz"
    if mode == "corrupt":
        victim.write_bytes(b"this is not a NIfTI file\n" * 10)
    elif mode == "truncated":
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    return folder


STUDY_OK = """
target = "toy"
seeds = 1
subjects = [1]
[[sources]]
name = "random"
[train]
epochs = 1
batch = 4
arch_config = { base_width = 4 }
"""
STUDIES = {
    "study-ok.toml": STUDY_OK,
    "study-syntax.toml": 'target = "toy"\n[[sources]\nname = "random"\n',
    "study-unknown.toml": STUDY_OK.replace("epochs = 1", "epoch = 1"),
    "study-type.toml": STUDY_OK.replace("epochs = 1", 'epochs = "ten"'),
    "study-bool.toml": STUDY_OK.replace("epochs = 1", "epochs = true"),
    "study-nosource.toml": STUDY_OK.replace('[[sources]]\nname = "random"\n', ""),
    "study-halfsource.toml": STUDY_OK.replace('name = "random"', 'name = "ae"\ndonor = "ae"'),
    "study-target.toml": STUDY_OK.replace('target = "toy"', 'target = "nope"'),
    "study-empty.toml": STUDY_OK.replace("seeds = 1", 'seeds = 1\nempty = "zero"'),
    "study-executor-field.toml": STUDY_OK + '[executor]\nkind = "slurm"\npartiton = "gpu"\n',
    "study-executor-cpus.toml": STUDY_OK + "[executor]\ncpus_per_task = 0\n",
}


def _build(root: Path) -> Path:
    import torch
    from safetensors.torch import save_file
    from swap_lab import make_checkpoint, make_data

    from reuse_console.engine.compare.rmse import run_rmse
    from reuse_console.engine.data.slices import write_slices
    from reuse_console.engine.reuse.plan_lab import plan_from_lab
    from reuse_console.engine.reuse.plans import save_plan
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.store.lab import Lab

    lab = Lab(root / "lab")
    make_data(lab)  # "toy": 2 train, 2 val subjects
    write_slices(lab.path("datasets", "noval"), _slices("noval", split=["train"] * 3), source={"format": "test"})
    write_slices(
        lab.path("datasets", "twoclass"),
        _slices("twoclass", split=["train", "val"], classes=["background", "MYO"]),
        source={"format": "test"},
    )
    write_slices(
        lab.path("datasets", "nofg"), _slices("nofg", split=["train", "val"], fg=False), source={"format": "test"}
    )
    make_checkpoint(lab, "seg", seed=1)
    make_checkpoint(lab, "ae", task="ae", seed=2)
    make_checkpoint(lab, "wide", seed=3, base_width=8)
    make_checkpoint(lab, "psp", seed=4, arch="pspnet")
    _spoil(lab, "nan", float("nan"))
    run_scan(lab, "seg", "ae", "toy", layers="1-2", kinds="RM", device="cpu", name="s1")
    run_scan(lab, "seg", "ae", "toy", layers="1-2", kinds="RM", device="cpu", name="s1-ignore", empty="ignore")
    run_scan(lab, "seg", "ae", "nofg", layers="1", kinds="RM", device="cpu", name="s-nofg")
    run_rmse(lab, ["seg", "ae"], name="c1")
    make_checkpoint(lab, "seg2", seed=5)
    run_rmse(lab, ["seg", "seg2"], name="c-other")  # not the pair scan s1 measured (seg <- ae)
    p1 = plan_from_lab(lab, scan="s1", name="p1")
    every = p1.with_reusable([(t.layer, t.kind) for t in p1.tensors])  # every tensor, the head's included
    save_plan(lab, dataclasses.replace(every, name="pall"))
    ck, ds, sc = lab.folder("checkpoints"), lab.folder("datasets"), lab.folder("scans")
    _truncate(ck / "seg.h5", ck / "trunc.h5")
    (ck / "junk.h5").write_bytes(os.urandom(4096))
    _copy_with_schema(ck / "seg.h5", ck / "future.h5", 99)
    _truncate(ds / "toy.h5", ds / "trunc-data.h5")
    _copy_with_schema(ds / "toy.h5", ds / "future-data.h5", 99)
    _truncate(sc / "s1.h5", sc / "trunc-scan.h5")
    _copy_with_schema(sc / "s1.h5", sc / "future-scan.h5", 99)
    # files outside the lab
    for mode in ("good", "corrupt", "truncated"):
        _nifti_folder(root, mode)
    _dicom_folders(root)
    (root / "afile.txt").write_text("just a file\n")
    state = {k: v.clone() for k, v in torch.load(_export(lab, root), weights_only=True).items()}
    state[NAN_KEY][0] = float("nan")
    torch.save(state, root / "nan.pt")
    state[NAN_KEY][0] = float("inf")
    save_file(state, str(root / "inf.safetensors"))
    for name, text in STUDIES.items():
        (root / name).write_text(text)
    (root / "study-binary.toml").write_bytes(b'target = "\xff\xfe"\n')
    (root / "lab-shared").mkdir(mode=0o775)
    (root / "lab-shared").chmod(0o775)  # group-writable, no sticky bit: refused for cluster task files
    return lab.root


def _dicom_folders(root: Path) -> None:
    """RVSC replicas spoiled one way each, and a DICOM series whose label lies on another grid."""
    import nibabel as nib
    from dicom_replica import COLS, ROWS, make_rvsc, stored_pixels, write_image, write_points

    orphan = make_rvsc(root / "rvsc-orphan") / "patient01"
    write_points(orphan / "P01contours-manual" / "P01-0042-icontour-manual.txt", [(1, 1), (2, 1), (2, 2)])
    nopix = make_rvsc(root / "rvsc-nopixels") / "patient01" / "P01dicom"
    write_image(nopix / "P01-0001.dcm", stored_pixels(0, 0), pixel_data=False)
    mixed = make_rvsc(root / "rvsc-mixed") / "patient01" / "P01dicom"
    write_image(mixed / "P01-0004.dcm", np.zeros((ROWS, COLS + 2), np.uint16), position=(-20.0, -30.0, -8.0))
    packed = make_rvsc(root / "rvsc-compressed") / "patient01" / "P01dicom"
    write_image(packed / "P01-0001.dcm", stored_pixels(0, 0), compressed=True)
    series = root / "dicom-label-grid" / "case01"
    for k in range(3):
        write_image(series / f"img{k}.dcm", stored_pixels(k, 0), position=(0.0, 0.0, 5.0 * k), instance=k + 1)
    nib.save(nib.Nifti1Image(np.zeros((COLS, ROWS, 3), np.uint8), np.eye(4)), str(series / "label.nii.gz"))


def _export(lab, root: Path) -> Path:
    from reuse_console.engine.models.ckpt_io import export_checkpoint

    return export_checkpoint(lab, "seg", root / "seg.pt", "pt")


@pytest.fixture(scope="module")
def bad_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input")
    _build(root)
    shutil.copytree(root / "lab", root / "lab.pristine", copy_function=shutil.copy2)
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file under `root`, hidden ones included: (size, mtime_ns, sha256)."""
    out: dict[str, tuple] = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for f in filenames:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _argv(r: Row, root: Path) -> list[str]:
    fill = {"lab": str(root / "lab"), "root": str(root), "w4": '{"base_width": 4}'}
    out = []
    for token in r.argv:
        token = token.replace("{{", "\0").format(**fill).replace("\0", "{")
        if len(token) >= 2 and token[0] == token[-1] == "'":
            token = token[1:-1]
        out.append(token)
    return out


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from reuse_console.tui.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except BaseException:  # noqa: BLE001 - an escaping exception is exactly what this table forbids
        captured = capsys.readouterr()
        pytest.fail(f"exception escaped main() for {argv}:\n{traceback.format_exc()}\nstderr: {captured.err}")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check(r: Row, code: int, err: str, before: dict, after: dict) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, f"{r.id}: exit {code}, stderr: {err!r}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"{r.id}: stderr has {len(lines)} lines: {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert r.expect.lower() in lines[0].lower(), f"{r.id}: {r.expect!r} not in {lines[0]!r}"
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k, "gone") != after.get(k, "gone"))
    assert not changed, f"{r.id}: the lab changed: {changed}"


@pytest.mark.parametrize("r", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(
    r: Row, bad_lab: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REUSE_LAB", raising=False)
    monkeypatch.chdir(tmp_path)  # commands that default to ./lab or ./phantom write nothing in the repo
    lab = bad_lab / "lab"
    before = snapshot(lab)
    code, _out, err = run_in_process(_argv(r, bad_lab), capsys)
    after = snapshot(lab)
    if after != before:  # put the lab back so one failing row does not change the next rows' lab
        shutil.rmtree(lab)
        shutil.copytree(bad_lab / "lab.pristine", lab, copy_function=shutil.copy2)
    check(r, code, err, before, after)


SUBPROCESS_ROWS = ("h5-trunc-eval", "lab-is-file-ls", "study-syntax")


@pytest.mark.parametrize("row_id", SUBPROCESS_ROWS)
def test_bad_input_subprocess(row_id: str, bad_lab: Path, tmp_path: Path) -> None:
    """The real `reuse-console` process: the same line and exit code, nothing else on stderr."""
    r = next(r for r in ROWS if r.id == row_id)
    lab = bad_lab / "lab"
    before = snapshot(lab)
    env = {k: v for k, v in os.environ.items() if k != "REUSE_LAB"}
    env["COLUMNS"] = "60"  # a narrow terminal must not wrap the message into two lines
    proc = subprocess.run(
        [sys.executable, "-m", "reuse_console.tui.cli", *_argv(r, bad_lab)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    check(r, proc.returncode, proc.stderr, before, snapshot(lab))


def test_train_without_validation_subjects_says_how_it_judges(
    bad_lab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not an error: a data set with no validation subjects trains, judging epochs by training loss, and says so."""
    lab = tmp_path / "lab"
    shutil.copytree(bad_lab / "lab.pristine", lab)
    code, _out, err = run_in_process(
        [
            "train",
            "--data",
            "noval",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--arch-config",
            '{"base_width": 4}',
            "--name",
            "nv",
            "--device",
            "cpu",
            "--lab",
            str(lab),
        ],
        capsys,
    )
    assert code == 0, err
    assert "no validation subjects" in err and "training loss" in err
    assert (lab / "checkpoints" / "nv.h5").is_file()


def test_rows_are_documented() -> None:
    """docs/errors.md's bad-input table lists every row, by test id, in the same order, and no other."""
    errors = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    lines = [line for line in errors.splitlines() if line.startswith("| ")]
    documented = [line.rstrip(" |").rsplit("|", 1)[-1].strip().strip("`") for line in lines[1:]]
    ids = [r.id for r in ROWS]
    assert len(set(ids)) == len(ids)
    missing = [i for i in ids if i not in documented]
    assert not missing, f"rows missing from the bad-input table in docs/errors.md: {missing}"
    extra = [i for i in documented if i not in ids]
    assert not extra, f"docs/errors.md lists rows that are not tests: {extra}"
    assert documented == ids, "docs/errors.md lists the rows in another order"
