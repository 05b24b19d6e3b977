"""The Zero-shot tab's few-shot panel: drop a few example images per label and classify with them.

The examples go through :meth:`snapsight.zeroshot.ZeroShotClassifier.with_examples` (Tip-Adapter's cache, see
:mod:`snapsight.zeroshot.adapter`), exactly as ``snapsight classify --examples`` does. The panel's button is a page
step, not a public endpoint (``api_visibility="private"``; :mod:`snapsight.demo.guard` refuses it by name), and
every example is an upload opened by the project's one image opener within the demo's limits: at most
``max_images`` examples per request, each under ``max_pixels``. Uploaded examples are embedded for the request and
never written to the label-index cache, so a stream of requests cannot fill the server's disk.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from snapsight import SnapsightError
from snapsight.demo.fairness import Cancelled
from snapsight.demo.inputs import UserError
from snapsight.zeroshot.adapter import fold_label

SLOTS = 4  # labels that can get examples on the page at once
LABEL_CHARS = 200  # a slot's label text at most


def slot_pairs(values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """``[label, files, label, files, ...]`` as the page sends it -> ``[(label, [uploads])]`` of the filled slots;
    files without a label, or a label that is not text, are one sentence."""
    if len(values) % 2:
        raise UserError("Examples come as pairs of a label and its images.", title="Examples")
    pairs = []
    for n, (label, files) in enumerate(zip(values[::2], values[1::2]), start=1):
        files = [f for f in (files if isinstance(files, (list, tuple)) else [files]) if f is not None]
        if label is not None and not isinstance(label, str):
            raise UserError(f"Example slot {n}: the label must be text.", title="Examples")
        label = (label or "").strip()
        if not files:
            continue
        if not label:
            raise UserError(f"Example slot {n} has images but no label: type which label they show.",
                            title="Examples")
        if len(label) > LABEL_CHARS:
            raise UserError(f"Example slot {n}: a label of {len(label)} characters is longer than "
                            f"{LABEL_CHARS}.", title="Examples")
        pairs.append((label, files))
    return pairs


def check_example_labels(pairs: Sequence[tuple[str, list[Any]]], label_names: Sequence[str], max_images: int,
                         ) -> None:
    """Every example label among the labels typed above, and at most ``max_images`` examples in all."""
    known = {fold_label(n) for n in label_names}
    unknown = [label for label, _ in pairs if fold_label(label) not in known]
    if unknown:
        raise UserError(f"The examples' label(s) {', '.join(repr(u) for u in unknown)} are not among the labels; "
                        "add them to the labels or fix the slot.", title="Examples")
    total = sum(len(files) for _, files in pairs)
    if total > max_images:
        raise UserError(f"{total} example images is more than the {max_images} allowed per request.",
                        title="Examples")


def fit_markdown(fit: Any, count: int) -> str:
    """What the cache did, for the person at the page."""
    how = {"leave-one-out": "chosen by leave-one-out on the examples", "given": "given",
           "fitted": "one example per label: alpha the smallest that gets every example right"}[fit.chosen_by]
    text = f"{count} example image(s) used; weights alpha {fit.alpha:g}, beta {fit.beta:g} ({how})"
    if fit.loo_accuracy is not None:
        text += (f"; on the examples, each left out in turn: {100 * fit.loo_accuracy:.0f}% right with them, "
                 f"{100 * fit.loo_zero_shot_accuracy:.0f}% zero-shot")
    return text + "."


class FewShotPanel:
    """The panel's components and its handler; ``app`` is the :class:`~snapsight.demo.app.DemoApp` whose request
    checks, model cache, decoder and model turn it uses, and ``label_data`` turns a result into a Label payload."""

    def __init__(self, app: Any, label_data: Callable[[Any], dict], model_side: Callable[[Any], int | None]):
        self.app, self.label_data, self.model_side = app, label_data, model_side
        self.slots: list[Any] = []

    def build(self) -> tuple[Any, Any, Any]:
        """The accordion (call inside the Zero-shot tab); returns ``(button, result, note)``."""
        with gr.Accordion("Few-shot: add example images per label", open=False):
            gr.Markdown("Drop a few images of what a label means to you; they are added to the zero-shot answer "
                        "(Tip-Adapter's cache). Labels without examples stay zero-shot.")
            for n in range(SLOTS):
                with gr.Row():
                    label = gr.Textbox(label=f"Label {n + 1}", max_lines=1, scale=1, elem_id=f"fs-label-{n}")
                    files = gr.File(file_count="multiple", file_types=["image"], label="Its example images", scale=2,
                                    elem_id=f"fs-files-{n}")
                self.slots += [label, files]
            button = gr.Button("Classify with examples", elem_id="fs-run")
            result = gr.Label(label="Ranked labels, with the examples", elem_id="fs-result")
            note = gr.Markdown(elem_id="fs-note")
        return button, result, note

    def classify(self, image: Any, labels_text: Any, templates: Any, top_k: Any, threshold: Any, spec: Any,
                 *slots: Any) -> tuple[dict, str]:
        """(image, labels, options, model, label/files pairs) -> (Label payload, note)."""
        app = self.app
        if image is None:
            raise UserError("No image: upload one or pick an example first.", title="Image needed")
        pairs = slot_pairs(slots)
        if not pairs:
            raise UserError("No examples: type a label in a slot and drop its images beside it.", title="Examples")
        spec, gone = app._spec(spec), app._gone(None)
        label_set, tmpl, (_, _, k, thr, _) = app._label_request(labels_text, templates, top_k, threshold, False)
        check_example_labels(pairs, label_set.names, app.cfg.max_images)
        clf = app.classifier(spec)
        if not hasattr(clf, "with_examples"):
            raise UserError("Few-shot examples need a PyTorch CLIP model; this one is an ONNX export.",
                            title="Examples")
        side = self.model_side(clf)
        try:
            img, _ = app._decode(image, side, gone)
            examples = {label: [app._decode(f, side, gone)[0] for f in files] for label, files in pairs}
            label_set, index = app._labels(clf, spec, label_set, tmpl, gone)
        except Cancelled:
            raise UserError("Stopped: the page that asked for this has gone.") from None
        try:
            with app.turn:
                fs = clf.with_examples(examples, cache_dir="")
                result = fs.classify_embeddings(fs.encode_images([img]), label_set, index, top_k=k, threshold=thr)
                fit = fs.cache_adapter.fit(label_set, index, fs.logit_scale)
        except SnapsightError as e:  # the library's refusals are sentences for the user
            raise UserError(str(e), title="Examples") from None
        fs.annotate_familiarity(result, [img])
        return self.label_data(result[0]), fit_markdown(fit, len(fs.cache_adapter))
