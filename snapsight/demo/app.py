"""The snapsight web demo: Gradio Blocks on the public API only.

Tabs:

- **Zero-shot**: one image (upload or a shipped example) or several, free-text labels, template set,
  top-k and an optional "none of these" threshold; ranked labels (``gr.Label``), a table for several
  images, and a why-this-label heatmap (:mod:`snapsight.zeroshot.explain`). A model picker loads the
  offline default, an open_clip name + pretrained tag, or a local folder on demand.
- **Classifier**: a classifier saved by ``snapsight probe`` run on uploaded images.

Stable API (``gradio_client``)::

    Client(url).predict(handle_file("cat.jpg"), "cat, dog", api_name="/classify")
    # -> {"label": "cat", "confidences": [{"label": "cat", "confidence": 0.93}, ...]}

Serving choices: 127.0.0.1 and no share link unless asked; uploads above ``max_file_size`` per file or
``max_upload_total`` per upload request are refused, and uploaded files are deleted ``upload_max_age_s``
after they arrive; images above ``max_pixels`` are refused by :func:`snapsight.data.images.open_image`, which
decodes large ones at the size the model needs, at most ``max_decodes`` at once. Every image is opened by
that one function, so bad files give one clear message. Concurrent ``classify`` requests are merged into
one forward pass by :class:`~snapsight.demo.batching.MicroBatcher`; models are loaded once
(:class:`~snapsight.demo.models.ModelCache`) and the classifier keeps its label index between requests.

Fairness (:mod:`snapsight.demo.fairness`): a new label set is embedded outside the batcher, in chunks of
about ``label_chunk_ms`` that take turns with the image batches, within a budget (``max_labels`` labels,
``max_prompts`` labels x templates) and only while its client is connected. Only the three endpoints above
can be called by name; the page's own steps (heatmap, model picker) are reachable only as the page calls
them, and every field that names a model obeys ``allow_local_paths`` (off on a non-loopback host).
The HTTP front door (:mod:`snapsight.demo.guard`) and the checks on each request's fields
(:mod:`snapsight.demo.inputs`) live beside this module.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a local demo
# After every event Gradio's queue rebuilds a pandas DataFrame of the last (up to 10,000) events for its
# /monitoring summary (gradio/queueing.py, Queue.compute_analytics_summary): ~1-4 ms of server CPU per
# request, growing with uptime. We serve with monitoring off, so refresh that summary only every 1000 events.
# Read when the queue is created (Blocks.queue), so it must be set before build().
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from snapsight import ImageError, SnapsightError, detect, open_image  # noqa: E402
from snapsight.data import MAX_IMAGE_PIXELS  # noqa: E402
from snapsight.demo.batching import MicroBatcher  # noqa: E402
from snapsight.demo.examples import EXAMPLES_DIR, example_files  # noqa: E402
from snapsight.demo.fairness import (  # noqa: E402
    Cancelled,
    ChunkedTextEncoder,
    ClientGone,
    DecodeSlots,
    FairLock,
    LabelIndexes,
    check_budget,
    total_prompts,
)
from snapsight.demo.fewshot import FewShotPanel  # noqa: E402
from snapsight.demo.guard import PUBLIC_API, RequestGuard, parse_size  # noqa: E402
from snapsight.demo.inputs import (  # noqa: E402
    TOP_K_SLIDER_MAX,
    UserError,
    is_loopback,
    names_server_path,
    shown,
    template_choices,
    templates_of,
    validate_flag,
    validate_threshold,
    validate_top_k,
)
from snapsight.demo.models import ModelCache, ModelChoice, probe_cache, zeroshot_cache  # noqa: E402
from snapsight.demo.report_tab import ReportTab  # noqa: E402
from snapsight.demo.search_tab import SearchTab  # noqa: E402
from snapsight.ondevice import multi_label_explanation  # noqa: E402
from snapsight.zeroshot import explain_label, load_label_set, resolve_templates  # noqa: E402

log = logging.getLogger(__name__)

NONE_OF_THESE = "none of these"
UNFAMILIAR = "This image is unlike anything the model was trained on, so its answer is unreliable."
SOURCE_DEFAULT, SOURCE_OPEN_CLIP, SOURCE_LOCAL = "Offline default", "open_clip name + tag", "Local folder"
TABLE_HEADERS = ["image", "top label", "probability", "ranking"]
DEFAULT_LABELS = "cat, dog, pizza, sunset, rocket, coffee, astronaut"  # covers every shipped example
LOCAL_PATHS_OFF = ("Loading server folders or files from the page is off for a non-local host; choose an open_clip "
                   "model name and pretrained tag, or start the demo with --model / --classifier.")
UNUSABLE_PATH = ("That path cannot be used: give a folder this server can read that holds an open_clip local-dir "
                 "model or a Hugging Face CLIP model (a classifier saved by `snapsight probe` goes in the "
                 "Classifier tab).")
UNUSABLE_CLASSIFIER = "That path cannot be used: give a folder this server can read that holds a classifier " \
                      "saved by `snapsight probe`."


@dataclass
class DemoConfig:
    """How the demo serves. Defaults are the safe ones: local only, bounded uploads and queue."""

    model: str | None = None  # zero-shot model at start; None = offline default (snapsight.default_model)
    pretrained: str | None = None  # open_clip pretrained tag for `model`
    classifier: str | None = None  # a `snapsight probe` output folder for the Classifier tab
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False  # a public gradio.live link; never on unless asked for
    max_file_size: str | int = "10mb"  # per upload, enforced by Gradio before our code runs
    max_pixels: int = MAX_IMAGE_PIXELS  # per image, enforced by open_image before decoding
    max_images: int = 64  # images per "several images" request
    max_batch_size: int = 32  # images per forward pass when requests are merged
    batch_wait_ms: float = 5.0  # how long the batcher waits for companions once a request arrives
    concurrency_limit: int | None = None  # classify requests in flight; None = max_batch_size
    queue_size: int = 256  # waiting requests beyond this are refused ("queue is full")
    explain_samples: int = 8  # SmoothGrad samples per heatmap (one backward pass of this batch size)
    max_models: int = 2  # zero-shot models kept in memory
    allow_local_paths: bool | None = None  # page may load server folders; None = only on a loopback host
    extra_allowed_paths: list[str] = field(default_factory=list)
    index: str | None = None  # an image index (`snapsight index`) for the Search tab, chosen at launch only
    report: str | None = None  # a trust report folder (`snapsight evaluate --out`) for the Report tab, launch only
    threshold: float | None = None  # where the "none of these" slider starts (e.g. a report's choice)
    max_labels: int = 1000  # labels per request (builtin:imagenet-1k fits); more are refused
    max_prompts: int = 8000  # labels x templates embedded for one request (imagenet-1k x 8 default templates)
    label_chunk_ms: float = 50.0  # a label-set build takes the model for about this long per chunk
    label_share: float = 0.5  # under load, a label-set build gets at most this share of the model's time
    max_label_builds: int = 1  # label sets larger than one chunk built at once; others wait their turn
    max_decodes: int = 1  # images over 4 MP decoded at once (a 64 MP PNG: ~200 MB and ~1 s of a core each)
    max_upload_total: str | int = "100mb"  # all files of one upload request together
    upload_max_age_s: int = 900  # uploaded files are deleted this long after they arrive
    upload_cleanup_every_s: int = 60  # how often the upload folder is swept

    @property
    def classify_concurrency(self) -> int:
        return self.concurrency_limit or self.max_batch_size

    @property
    def heavy_concurrency(self) -> int:
        """Heatmaps and probe runs: one per two cores, at most 4 (each one already uses several threads)."""
        return max(1, min(4, (os.cpu_count() or 1) // 2))

    @property
    def local_paths_allowed(self) -> bool:
        if self.allow_local_paths is not None:
            return self.allow_local_paths
        return is_loopback(self.host)


def _payload_path(payload: Any) -> tuple[str, str]:
    """(server path, name to show) of an un-preprocessed Gradio file/image payload."""
    if isinstance(payload, (str, Path)):
        return str(payload), Path(payload).name
    if isinstance(payload, dict) and payload.get("path"):
        return str(payload["path"]), payload.get("orig_name") or Path(payload["path"]).name
    raise UserError("That upload has no file in it; upload the image again.")


def _image_error(name: str, path: str, error: ImageError) -> gr.Error:
    reason = str(error)
    if reason.startswith(path):
        reason = reason[len(path):].lstrip(": ")
    return UserError(f"{name}: {reason}", title="Cannot use this file")


def _open_upload(payload: Any, max_pixels: int, min_side: int | None = None):
    """Open an upload through the project's one image opener; ImageError -> gr.Error naming the file."""
    path, name = _payload_path(payload)
    try:
        return open_image(path, max_pixels=max_pixels, min_side=min_side), name
    except ImageError as e:
        raise _image_error(name, path, e) from None


def _header_pixels(path: str) -> int:
    """Width x height from the file's header (no decoding); 0 when it cannot be read (open_image says why)."""
    try:
        with Image.open(path) as im:
            return im.width * im.height
    except Exception:  # noqa: BLE001 - the real open reports the problem
        return 0


def _answer(future: Any) -> Any:
    """Wait for a batched result; the library's user-facing errors (e.g. an unknown template) become messages."""
    try:
        return future.result()
    except SnapsightError as e:
        raise UserError(str(e)) from None


def _open_clip_registered(name: str, tag: str | None) -> bool:
    """Whether ``name`` (+ ``tag``) is in open_clip's own registry (no file system involved)."""
    import open_clip

    if name not in open_clip.list_models():
        return False
    return tag is None or tag in open_clip.list_pretrained_tags_by_model(name)


def _prompts(templates: str | None) -> tuple[str, ...]:
    """The prompt templates of a template set, for the heatmap's text embedding."""
    try:
        return tuple(resolve_templates(templates or "default"))
    except SnapsightError:
        return ("a photo of a {}.", "{}")


def _label_data(result: Any) -> dict:
    """A ZeroShotResult (or probe ranking) as Gradio's Label payload; headline 'none of these' if flagged."""
    pairs = list(zip(result.labels, result.probs)) if hasattr(result, "labels") else list(result)
    headline = NONE_OF_THESE if getattr(result, "none_of_these", False) else (pairs[0][0] if pairs else "")
    if getattr(result, "unfamiliar", False):  # the model carries a familiarity reference and saw nothing like it
        headline = f"{UNFAMILIAR} Best guess: {headline}"
    return {"label": headline, "confidences": [{"label": str(l), "confidence": float(p)} for l, p in pairs]}


def _explain_multi_label(clf: Any, part: tuple) -> None:
    """In multi-label mode, say in a notice what the percentages are and when a label counts as present."""
    _, _, _, threshold, multi = part
    if multi and hasattr(clf, "logit_scale"):
        gr.Info(multi_label_explanation(clf.logit_scale, clf.logit_bias, clf.config.multi_label_min_prob, threshold))


def _table_row(name: str, result: Any) -> list:
    pairs = list(zip(result.labels, result.probs)) if hasattr(result, "labels") else list(result)
    top, p = pairs[0] if pairs else ("", 0.0)
    if getattr(result, "none_of_these", False):
        top = f"{NONE_OF_THESE} (best: {top})"
    return [name, top, round(float(p), 4), ", ".join(f"{l} {float(q):.2f}" for l, q in pairs)]


def _model_side(clf: Any) -> int | None:
    """The smallest input side of a loaded model (from its model_info), for decoding large images at that size."""
    size = (getattr(clf, "model_info", None) or {}).get("image_size")
    if isinstance(size, (list, tuple)) and size:
        size = min(int(s) for s in size)
    return int(size) if isinstance(size, (int, float)) and size > 0 else None


def banner_markdown(spec: ModelChoice, info: dict | None = None) -> str:
    if spec.is_offline_default:
        return (
            "**Offline default model in use.** It is small and was trained only on Fashion-MNIST clothes, emoji "
            "pictures and Tux Paint stamps, so it knows those and says when an image is unlike them; real photos "
            "need a pretrained CLIP: pick *open_clip name + tag* "
            "under **Model** (e.g. `ViT-B-32` + `laion2b_s34b_b79k`, if its weights are on this machine) or "
            "start with `snapsight demo --model ViT-B-32 --pretrained laion2b_s34b_b79k`."
        )
    return f"Model: **{spec.describe()}**."


def model_markdown(spec: ModelChoice, info: dict | None) -> str:
    info = dict(info or {})
    parts = [f"**Loaded:** {spec.describe()}"]
    for key in ("name", "pretrained", "embed_dim", "image_size", "source"):
        if info.get(key) not in (None, ""):
            parts.append(f"{key.replace('_', ' ')}: `{info[key]}`")
    return " · ".join(parts)


class DemoApp:
    """The demo's state (model caches, batcher) and its request handlers; :meth:`build` makes the page."""

    def __init__(self, cfg: DemoConfig, zeroshot: ModelCache | None = None, probes: ModelCache | None = None):
        self.cfg = cfg
        self.start_spec = ModelChoice(cfg.model, cfg.pretrained)
        self.zeroshot = zeroshot or zeroshot_cache(cfg.device, cfg.max_models)
        self.probes = probes or probe_cache(cfg.device)
        self.batcher = MicroBatcher(self._run_batch, cfg.max_batch_size, cfg.batch_wait_ms / 1000.0, "classify-batcher")
        self.turn = FairLock()  # the model: image batches and label-set chunks take it in arrival order
        self.label_indexes = LabelIndexes(max_builds=cfg.max_label_builds)
        self.decodes = DecodeSlots(cfg.max_decodes)
        self.text_chunks = 0  # label-set chunks run so far (tests and the benchmark read it)
        self.blocks: gr.Blocks | None = None
        self.search_tab = SearchTab(cfg.index, cfg.device) if cfg.index else None  # a bad index fails at start
        self.report_tab = ReportTab(cfg.report) if cfg.report else None  # a folder without a report fails at start
        self.fewshot = FewShotPanel(self, _label_data, _model_side)  # example images per label (Tip-Adapter)

    # ----------------------------------------------------------------- models
    def classifier(self, spec: ModelChoice, path_given: bool = False) -> Any:
        """The loaded model for ``spec``; a failure is one message (for a path the user typed: always the same
        one, with the reason in the server log, so answers do not tell which paths exist)."""
        try:
            return self.zeroshot.get(spec)
        except Exception as e:  # noqa: BLE001 - open_clip/HF raise many kinds; the user gets one sentence
            if path_given:
                log.info("model path refused: %s (%s: %s)", spec.describe(), type(e).__name__, e)
                raise UserError(UNUSABLE_PATH, title="Model not available") from None
            if isinstance(e, SnapsightError):
                raise UserError(str(e), title="Model not available") from None
            log.warning("loading %s failed: %s: %s", spec.describe(), type(e).__name__, e)
            raise UserError(f"Could not load {spec.describe()}: {type(e).__name__}: {e}",
                            title="Model not available") from None

    def preload(self) -> dict:
        """Load the start model now (fail fast before serving); returns its model_info."""
        return dict(getattr(self.zeroshot.get(self.start_spec), "model_info", {}) or {})

    def _run_batch(self, key: Hashable, items: list) -> list:
        spec, _, _, top_k, threshold, multi_label = key
        clf = self.zeroshot.get(spec)
        label_set, index = items[0][1]  # same key, same labels and templates: any member's index serves all
        with self.turn:
            images = [image for image, _ in items]
            emb = clf.encode_images(images)
            return clf.annotate_familiarity(clf.classify_embeddings(
                emb, label_set, index, top_k=top_k, threshold=threshold, multi_label=multi_label), images)

    # -------------------------------------------------------------- requests
    def _gone(self, request: gr.Request | None) -> ClientGone:
        return ClientGone(self.blocks, getattr(request, "session_hash", None) if request is not None else None)

    def _label_request(self, text: Any, templates: Any, top_k: Any, threshold: Any, multi_label: Any):
        """Validate a request's labels, templates and numbers within the budget; returns (label_set, templates,
        key part). Nothing is embedded yet."""
        if not isinstance(text, str) or not text.strip():
            raise UserError(
                "No labels: type the labels to choose from, separated by commas or new lines (e.g. cat, dog, pizza).",
                title="Labels needed",
            )
        if len(text) > 1000 * self.cfg.max_labels:
            raise UserError(f"The labels text is {len(text):,} characters long, more than this demo reads in one "
                            f"request ({1000 * self.cfg.max_labels:,}).", title="Too many labels")
        tmpl = templates_of(templates)
        try:
            label_set = load_label_set(text)
        except SnapsightError as e:
            message = str(e)
            if message.startswith("no labels given"):
                message = ("No labels: type the labels to choose from, separated by commas or new lines "
                           "(e.g. cat, dog, pizza).")
            raise UserError(message, title="Labels needed") from None
        try:
            check_budget(len(label_set), total_prompts(label_set.labels, tmpl), self.cfg.max_labels,
                         self.cfg.max_prompts)
        except SnapsightError as e:
            raise UserError(str(e)[:1].upper() + str(e)[1:] + ".", title="Too many labels") from None
        k = validate_top_k(top_k, len(label_set))
        thr = validate_threshold(threshold)
        multi = validate_flag(multi_label, "Multi-label")
        for note in label_set.notes:
            gr.Warning(note)
        return label_set, tmpl, (text.strip(), tmpl, k, thr, multi)

    def _labels(self, clf: Any, spec: ModelChoice, label_set: Any, tmpl: tuple[str, ...], gone: ClientGone):
        """(label_set, index) for this request: from the classifier's caches, or built now in chunks that take
        turns with the image batches (one build per label set; Cancelled when the client leaves)."""
        prompts = total_prompts(label_set.labels, tmpl)

        def build():  # both backends (torch, ONNX export) take the chunked encoder
            encoder = ChunkedTextEncoder(lambda rows, n: clf.encode_tokens(rows, batch_size=n), self.turn,
                                         self.cfg.label_chunk_ms / 1000.0, gone, share=self.cfg.label_share,
                                         on_chunk=self._count_chunk)
            return clf.label_index(label_set, tmpl, encode_tokens=encoder)

        key = (spec, json.dumps(label_set.key()), tmpl)
        try:
            return self.label_indexes.get(key, build, prompts, gone)
        except SnapsightError as e:
            raise UserError(str(e)) from None

    def _count_chunk(self) -> None:
        self.text_chunks += 1

    def _decode(self, payload: Any, side: int | None, gone: ClientGone):
        """Open one upload at the model's size, at most ``max_decodes`` at once."""
        path, name = _payload_path(payload)
        try:
            image = self.decodes.decode(
                _header_pixels(path), lambda: open_image(path, max_pixels=self.cfg.max_pixels, min_side=side), gone)
        except ImageError as e:
            raise _image_error(name, path, e) from None
        return image, name

    def _spec(self, spec: Any) -> ModelChoice:
        """The session's model (a gr.State the page keeps); anything else from a raw caller is refused."""
        if spec is None:
            return self.start_spec
        if not isinstance(spec, ModelChoice):
            raise UserError("Unknown model choice; pick the model in the page's Model section.")
        return spec

    def classify(self, image, labels_text, templates="default", top_k=5, threshold=0.0, multi_label=False,
                 spec=None, request: gr.Request = None):
        """(image, labels) -> Gradio Label payload, plus the top label for the heatmap step."""
        if image is None:
            raise UserError("No image: upload one or pick an example first.", title="Image needed")
        spec, gone = self._spec(spec), self._gone(request)
        label_set, tmpl, part = self._label_request(labels_text, templates, top_k, threshold, multi_label)
        clf = self.classifier(spec)  # load (or fail with a clear message) before any work
        try:
            img, _ = self._decode(image, _model_side(clf), gone)
            entry = self._labels(clf, spec, label_set, tmpl, gone)
            gone.check()
        except Cancelled:
            log.info("classify stopped: the client disconnected")
            raise UserError("Stopped: the page that asked for this has gone.") from None
        result = _answer(self.batcher.submit_async((spec,) + part, (img, entry)))
        _explain_multi_label(clf, part)
        return _label_data(result), (result.labels[0] if result.labels else None)

    def classify_many(self, files, labels_text, templates="default", top_k=5, threshold=0.0, multi_label=False,
                      spec=None, request: gr.Request = None):
        """Several images -> table rows (one per image; unreadable files get their reason in the row)."""
        files = [f for f in (files or []) if f is not None] if isinstance(files, (list, tuple)) else [files]
        files = [f for f in files if f is not None]
        if not files:
            raise UserError("No images: upload one or more image files first.", title="Images needed")
        if len(files) > self.cfg.max_images:
            raise UserError(f"{len(files)} images is more than the {self.cfg.max_images} allowed per request.")
        spec, gone = self._spec(spec), self._gone(request)
        label_set, tmpl, part = self._label_request(labels_text, templates, top_k, threshold, multi_label)
        clf = self.classifier(spec)
        side = _model_side(clf)
        rows: list[list | None] = []
        pending = []
        try:
            entry = self._labels(clf, spec, label_set, tmpl, gone)
            for f in files:
                try:
                    img, name = self._decode(f, side, gone)
                except gr.Error as e:
                    gr.Warning(e.message)
                    rows.append([_payload_path(f)[1], f"(skipped) {e.message}", None, ""])
                    continue
                rows.append(None)
                pending.append((len(rows) - 1, name, self.batcher.submit_async((spec,) + part, (img, entry))))
        except Cancelled:
            log.info("classify_many stopped: the client disconnected")
            for _, _, fut in pending:
                fut.cancel()
            raise UserError("Stopped: the page that asked for this has gone.") from None
        for i, name, fut in pending:
            rows[i] = _table_row(name, _answer(fut))
        _explain_multi_label(clf, part)
        return {"headers": TABLE_HEADERS, "data": rows}

    def explain(self, image, label, templates="default", spec=None, enabled=True, request: gr.Request = None):
        """Overlay image for the why-this-label view (None when off or nothing to explain)."""
        if not enabled or image is None or not label:
            return None
        spec = self._spec(spec)
        clf = self.classifier(spec)
        try:
            img, _ = self._decode(image, _model_side(clf), self._gone(request))
        except Cancelled:
            return None
        prompts = templates_of(templates)
        try:
            exp = explain_label(clf.model, clf.preprocess, clf.tokenizer, img, str(label)[:300], prompts=prompts,
                                samples=self.cfg.explain_samples)
        except Exception as e:  # noqa: BLE001 - the ranking is already shown; a missing heatmap must not hide it
            log.warning("heatmap failed for %s: %s", spec.describe(), e)
            gr.Warning(f"No heatmap for this model ({type(e).__name__}: {e}).")
            return None
        method = f"SmoothGrad saliency, {self.cfg.explain_samples} samples" if exp.method == "gradient" else \
            f"{exp.method} saliency"
        return gr.Image(value=exp.overlay, label=f"Why “{label}”: where the image matches it ({method})")

    def load_model(self, source, name, pretrained, path):
        """Model picker -> (spec for this session, status line, banner).

        Every field that names a model obeys ``local_paths_allowed``: with it off, only open_clip's registered
        names and tags (and ``hf-hub:``) are accepted, decided from the text alone.
        """
        name = name.strip() if isinstance(name, str) else ""
        tag = pretrained.strip() if isinstance(pretrained, str) and pretrained.strip() else None
        path = path.strip() if isinstance(path, str) else ""
        path_given = False
        if source == SOURCE_OPEN_CLIP:
            if not name:
                raise UserError("Type an open_clip model name, e.g. ViT-B-32.")
            path_given = names_server_path(name) or (tag is not None and names_server_path(tag))
            if not self.cfg.local_paths_allowed:
                if path_given:
                    raise UserError(LOCAL_PATHS_OFF)
                if not name.startswith("hf-hub:") and not _open_clip_registered(name, tag):
                    raise UserError(f"{shown(name)} with tag {shown(tag)} is not a model open_clip knows; see "
                                    "open_clip.list_pretrained() for the names and tags.")
            spec = ModelChoice(name, tag)
        elif source == SOURCE_LOCAL:
            if not self.cfg.local_paths_allowed:
                raise UserError(LOCAL_PATHS_OFF)
            if not path:
                raise UserError("Type the path of a model folder (open_clip local-dir or Hugging Face CLIP).")
            spec, path_given = ModelChoice(path), True
        elif source in (SOURCE_DEFAULT, None, ""):
            spec = ModelChoice()
        else:
            raise UserError(f"Model source must be one of: {SOURCE_DEFAULT}, {SOURCE_OPEN_CLIP}, {SOURCE_LOCAL}.")
        if path_given:
            try:
                is_classifier = detect(spec.model) == "classifier"
            except Exception:  # noqa: BLE001 - any failure is the one message below
                is_classifier = True
            if is_classifier:
                log.info("model path refused: %s is a classifier folder or unreadable", spec.model)
                raise UserError(UNUSABLE_PATH, title="Model not available")
        clf = self.classifier(spec, path_given=path_given)
        info = dict(getattr(clf, "model_info", {}) or {})
        return spec, model_markdown(spec, info), banner_markdown(spec, info)

    def run_probe(self, path, files, top_k=5, request: gr.Request = None):
        """Classifier tab: a `snapsight probe` folder on uploaded images -> (Label of the first, table)."""
        path = (path.strip() if isinstance(path, str) else "") or (self.cfg.classifier or "")
        if not path:
            raise UserError("Give the folder of a classifier saved by `snapsight probe`.", title="Classifier needed")
        if path != self.cfg.classifier and not self.cfg.local_paths_allowed:
            raise UserError(LOCAL_PATHS_OFF)
        files = [f for f in (files or []) if f is not None] if isinstance(files, (list, tuple)) else [files]
        files = [f for f in files if f is not None]
        if not files:
            raise UserError("No images: upload one or more image files first.", title="Images needed")
        if len(files) > self.cfg.max_images:
            raise UserError(f"{len(files)} images is more than the {self.cfg.max_images} allowed per request.")
        try:
            if detect(path) != "classifier":
                raise SnapsightError("not a classifier folder")
            clf = self.probes.get(path)
        except Exception as e:  # noqa: BLE001 - one message whatever the path is (no existence oracle)
            log.info("classifier path refused: %s (%s: %s)", path, type(e).__name__, e)
            raise UserError(UNUSABLE_CLASSIFIER, title="Classifier not available") from None
        gone = self._gone(request)
        side = getattr(getattr(clf, "preprocessing", None), "image_size", None)
        images, names = [], []
        try:
            for f in files:
                img, name = self._decode(f, side if isinstance(side, int) else None, gone)
                images.append(img)
                names.append(name)
        except Cancelled:
            raise UserError("Stopped: the page that asked for this has gone.") from None
        num_classes = len(getattr(clf, "class_names", []) or []) or TOP_K_SLIDER_MAX
        rankings = clf.predict(images, top_k=validate_top_k(top_k, num_classes))
        rows = [_table_row(n, r) for n, r in zip(names, rankings)]
        return _label_data(rankings[0]), {"headers": TABLE_HEADERS, "data": rows}

    # ------------------------------------------------------------------ page
    def build(self, start_info: dict | None = None) -> gr.Blocks:
        cfg = self.cfg
        examples = example_files(knows_photos=not self.start_spec.is_offline_default)
        templates = template_choices()
        with gr.Blocks(title="snapsight demo", analytics_enabled=False,
                       delete_cache=(cfg.upload_cleanup_every_s, cfg.upload_max_age_s)) as demo:
            gr.Markdown("# snapsight\nUpload an image, type the labels to choose from, press **Classify**.")
            banner = gr.Markdown(banner_markdown(self.start_spec, start_info), elem_id="model-banner")
            spec_state = gr.State(self.start_spec)
            top_label = gr.State(None)
            with gr.Tab("Zero-shot"):
                with gr.Row():
                    with gr.Column(scale=1):
                        image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"], height=260,
                                         elem_id="zs-image")
                        labels = gr.Textbox(label="Labels (comma or new line separated)", lines=2,
                                            value=DEFAULT_LABELS, elem_id="zs-labels")
                        with gr.Accordion("Options", open=False):
                            template_set = gr.Dropdown(templates, value=templates[0], label="Prompt templates")
                            top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k")
                            threshold = gr.Slider(0.0, 1.0, value=cfg.threshold or 0.0, step=0.01,
                                                  label="'None of these' threshold (cosine similarity; 0 = off)")
                            multi_label = gr.Checkbox(value=False, label="Several labels can be true (multi-label)")
                            show_heatmap = gr.Checkbox(value=True, label="Show why-this-label heatmap")
                        run = gr.Button("Classify", variant="primary", elem_id="zs-run")
                        if examples:
                            gr.Examples([[str(p)] for p in examples], inputs=[image], label="Examples (click one)",
                                        examples_per_page=len(examples))
                    with gr.Column(scale=1):
                        ranked = gr.Label(label="Ranked labels", elem_id="zs-result")
                        heatmap = gr.Image(label="Why this label", type="pil", interactive=False, height=260,
                                           elem_id="zs-heatmap")
                with gr.Accordion("Several images", open=False):
                    many = gr.File(file_count="multiple", file_types=["image"], label="Images")
                    run_many = gr.Button("Classify all", elem_id="zs-run-many")
                    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True, label="Results")
                fs_run, fs_result, fs_note = self.fewshot.build()
                with gr.Accordion("Model", open=False):
                    sources = [SOURCE_DEFAULT, SOURCE_OPEN_CLIP] + ([SOURCE_LOCAL] if cfg.local_paths_allowed else [])
                    source = gr.Radio(sources, value=SOURCE_DEFAULT if self.start_spec.is_offline_default
                                      else SOURCE_OPEN_CLIP, label="Source")
                    with gr.Row():
                        model_name = gr.Textbox(label="open_clip model", placeholder="ViT-B-32",
                                                value=cfg.model or "")
                        model_tag = gr.Textbox(label="pretrained tag", placeholder="laion2b_s34b_b79k",
                                               value=cfg.pretrained or "")
                        model_path = gr.Textbox(label="local folder", placeholder="/path/to/open_clip/folder",
                                                visible=cfg.local_paths_allowed)
                    load = gr.Button("Load model")
                    status = gr.Markdown(model_markdown(self.start_spec, start_info), elem_id="model-status")
            with gr.Tab("Classifier"):
                gr.Markdown("Run a classifier saved by `snapsight probe` on your images.")
                probe_path = gr.Textbox(label="Classifier folder", value=cfg.classifier or "",
                                        interactive=cfg.local_paths_allowed)
                probe_files = gr.File(file_count="multiple", file_types=["image"], label="Images")
                probe_k = gr.Slider(1, 20, value=5, step=1, label="Top-k")
                probe_run = gr.Button("Classify with this classifier", variant="primary")
                probe_label = gr.Label(label="First image")
                probe_table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True, label="Results")

            if self.search_tab is not None:
                self.search_tab.build(cfg.heavy_concurrency)
            if self.report_tab is not None:
                self.report_tab.build()
            zs = dict(concurrency_limit=cfg.classify_concurrency, concurrency_id="zeroshot")
            run.click(
                self.classify, [image, labels, template_set, top_k, threshold, multi_label, spec_state], [ranked, top_label],
                api_name="classify", preprocess=False, postprocess=False, **zs,
            ).success(
                self.explain, [image, top_label, template_set, spec_state, show_heatmap], [heatmap],
                api_visibility="private", preprocess=False, concurrency_limit=cfg.heavy_concurrency,
            )
            run_many.click(
                self.classify_many, [many, labels, template_set, top_k, threshold, multi_label, spec_state], [table],
                api_name="classify_many", preprocess=False, **zs,
            )
            fs_run.click(  # a page step, not a public endpoint (guard.PUBLIC_API)
                self.fewshot.classify, [image, labels, template_set, top_k, threshold, spec_state, *self.fewshot.slots],
                [fs_result, fs_note], api_visibility="private", preprocess=False, postprocess=False, **zs,
            )
            load.click(
                self.load_model, [source, model_name, model_tag, model_path], [spec_state, status, banner],
                api_visibility="private", concurrency_limit=1, concurrency_id="load",
            )
            probe_run.click(
                self.run_probe, [probe_path, probe_files, probe_k], [probe_label, probe_table],
                api_name="classify_with_classifier", preprocess=False, postprocess=False,
                concurrency_limit=cfg.heavy_concurrency,
            )
            demo.queue(max_size=cfg.queue_size, default_concurrency_limit=1)
        self.blocks = demo
        return demo

    def launch(self, demo: gr.Blocks | None = None, block: bool = True, quiet: bool = False):
        """Serve; returns (app, local_url). ``block=False`` returns at once (tests, benchmarks)."""
        cfg = self.cfg
        demo = demo or self.build()
        allowed = [str(EXAMPLES_DIR)] + list(cfg.extra_allowed_paths)
        if self.search_tab is not None:  # the index's own files, one by one: the Search gallery serves no other
            allowed += self.search_tab.allowed_paths()
        self.blocks = demo
        from starlette.middleware import Middleware

        guard = Middleware(RequestGuard, public=PUBLIC_API, max_upload_bytes=parse_size(cfg.max_upload_total))
        _, url, _ = demo.launch(
            app_kwargs={"middleware": [guard]},
            server_name=cfg.host, server_port=cfg.port, share=cfg.share, max_file_size=cfg.max_file_size,
            allowed_paths=allowed, prevent_thread_lock=not block, quiet=quiet, ssr_mode=False,
            enable_monitoring=False,  # no /monitoring routes (by default /monitoring/summary is open to anyone)
            max_threads=max(40, cfg.classify_concurrency + 16), show_error=False, inbrowser=False,
        )
        return demo, url


def build_demo(cfg: DemoConfig | None = None, preload: bool = True) -> tuple[DemoApp, gr.Blocks]:
    """The app and its page; ``preload`` loads the start model first so a missing model fails here."""
    app = DemoApp(cfg or DemoConfig())
    info = app.preload() if preload else None
    return app, app.build(info)


def serve(cfg: DemoConfig, block: bool = True, quiet: bool = False) -> tuple[DemoApp, gr.Blocks, str]:
    """Build, preload and launch; returns (app, blocks, url)."""
    app, demo = build_demo(cfg)
    demo, url = app.launch(demo, block=block, quiet=quiet)
    return app, demo, url

