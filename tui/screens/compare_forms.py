"""Job forms for the comparison commands that read activations: `align` and `cka`.

Both run the models on a data set's validation slices, so they are jobs (they outlive the
console) like training and scans; the forms offer the lab's checkpoints and data sets.
"""

from __future__ import annotations

from reuse_console.engine.core.device import CPU_THREADS, DEFAULT_PRECISION, PRECISIONS

from .job_forms import THREADS_HINT, Field, JobForm, Options

ALIGN_METHODS = ("weights", "activations")  # align --method
CKA_FEATURES = ("pooled", "pixels")  # cka --features


class AlignForm(JobForm):
    """`reuse-console align DONOR --to RECIPIENT --data ...`"""

    COMMAND = "align"
    TITLE_TEXT = "New alignment job (Git Re-Basin)"

    def __init__(
        self,
        checkpoints: Options,
        datasets: Options,
        recipient: str | None = None,
        donor: str | None = None,
        preset: list[str] | None = None,
    ) -> None:
        donor = donor or next((i for i, _ in checkpoints if i != recipient), "")
        fields = [
            Field("@donor", "donor", "choice", donor, required=True, hint="no checkpoints"),
            Field("--to", "recipient", "choice", recipient or "", required=True, hint="no checkpoints"),
            Field("--data", "data set", "choice", blank=True, hint="none: the donor's"),
            Field("--method", "method", "choice", ALIGN_METHODS[0], ALIGN_METHODS, omit_default=True),
            Field("--seed", "seed", "int", "0", omit_default=True),
            Field("--name", "name", "text", "", hint="blank: DONOR-to-RECIPIENT"),
            Field("--device", "device", "choice", "auto", ("auto", "cpu", "cuda")),
            Field("--threads", "CPU threads", "int", str(CPU_THREADS), hint=THREADS_HINT),
        ]
        options = {"@donor": checkpoints, "--to": checkpoints, "--data": datasets}
        super().__init__(fields, options, preset)


class CkaForm(JobForm):
    """`reuse-console cka A B [C ...] --data ...`"""

    COMMAND = "cka"
    TITLE_TEXT = "New CKA job (functional similarity)"

    def __init__(self, datasets: Options, models: str = "", preset: list[str] | None = None) -> None:
        fields = [
            Field(
                "@checkpoints", "checkpoints", "list", models, required=True, hint="two or more ids, space-separated"
            ),
            Field("--data", "data set", "choice", required=True, hint="no data sets"),
            Field("--layers", "layers", "text", "all", hint="all, numbered, 1-5,9, head", omit_default=True),
            Field("--features", "features", "choice", CKA_FEATURES[0], CKA_FEATURES, omit_default=True),
            Field("--pixels", "pixels/slice", "int", "64", omit_default=True, hint="with features pixels"),
            Field("--name", "name", "text", "", hint="blank: cka-A-B..."),
            Field("--device", "device", "choice", "auto", ("auto", "cpu", "cuda")),
            Field("--precision", "precision", "choice", DEFAULT_PRECISION, PRECISIONS),
            Field("--threads", "CPU threads", "int", str(CPU_THREADS), hint=THREADS_HINT),
        ]
        super().__init__(fields, {"--data": datasets}, preset)

    def build(self, values: dict[str, str]) -> list[str]:
        if len(values["@checkpoints"].replace(",", " ").split()) < 2:
            raise ValueError("checkpoints: give two or more ids (space-separated)")
        return super().build(values)
