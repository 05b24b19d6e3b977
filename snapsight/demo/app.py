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

Serving choices: 127.0.0.1 and no share link unless asked; uploads above ``max_file_size`` are refused
by Gradio, images above ``max_pixels`` by :func:`snapsight.data.images.open_image`; every image is
opened by that one function, so bad files give one clear message. Concurrent ``classify`` requests are
merged into one forward pass by :class:`~snapsight.demo.batching.MicroBatcher`; models are loaded once
(:class:`~snapsight.demo.models.ModelCache`) and the classifier keeps its label index between requests.
"""
from __future__ import annotations

import ipaddress
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

from snapsight import ImageError, SnapsightError, detect, open_image
from snapsight.data import MAX_IMAGE_PIXELS
from snapsight.demo.batching import MicroBatcher
from snapsight.demo.examples import EXAMPLES_DIR, example_files
from snapsight.demo.models import ModelCache, ModelChoice, probe_cache, zeroshot_cache
from snapsight.zeroshot import TEMPLATE_SETS, explain_label, parse_labels, resolve_templates

log = logging.getLogger(__name__)

NONE_OF_THESE = "none of these"
SOURCE_DEFAULT, SOURCE_OPEN_CLIP, SOURCE_LOCAL = "Offline default", "open_clip name + tag", "Local folder"
TABLE_HEADERS = ["image", "top label", "probability", "ranking"]
DEFAULT_LABELS = "cat, dog, pizza, sunset, rocket, coffee, astronaut"  # covers every shipped example


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


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def UserError(message: str, title: str = "Error") -> gr.Error:  # noqa: N802 - reads like the exception it makes
    """A message for the person at the page: shown as a toast (or raised by gradio_client), no server traceback."""
    return gr.Error(message, title=title, print_exception=False)


def _payload_path(payload: Any) -> tuple[str, str]:
    """(server path, name to show) of an un-preprocessed Gradio file/image payload."""
    if isinstance(payload, (str, Path)):
        return str(payload), Path(payload).name
    if isinstance(payload, dict) and payload.get("path"):
        return str(payload["path"]), payload.get("orig_name") or Path(payload["path"]).name
    raise UserError("That upload has no file in it; upload the image again.")


def _open_upload(payload: Any, max_pixels: int):
    """Open an upload through the project's one image opener; ImageError -> gr.Error naming the file."""
    path, name = _payload_path(payload)
    try:
        return open_image(path, max_pixels=max_pixels), name
    except ImageError as e:
        reason = str(e)
        if reason.startswith(path):
            reason = reason[len(path):].lstrip(": ")
        raise UserError(f"{name}: {reason}", title="Cannot use this file") from None


def _answer(future: Any) -> Any:
    """Wait for a batched result; the library's user-facing errors (e.g. an unknown template) become messages."""
    try:
        return future.result()
    except SnapsightError as e:
        raise UserError(str(e)) from None


def _template_choices() -> list[str]:
    """Template set names for the dropdown, ``default`` first."""
    return ["default"] + [name for name in TEMPLATE_SETS if name != "default"]


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
    return {"label": headline, "confidences": [{"label": str(l), "confidence": float(p)} for l, p in pairs]}


def _table_row(name: str, result: Any) -> list:
    pairs = list(zip(result.labels, result.probs)) if hasattr(result, "labels") else list(result)
    top, p = pairs[0] if pairs else ("", 0.0)
    if getattr(result, "none_of_these", False):
        top = f"{NONE_OF_THESE} (best: {top})"
    return [name, top, round(float(p), 4), ", ".join(f"{l} {float(q):.2f}" for l, q in pairs)]


def banner_markdown(spec: ModelChoice, info: dict | None = None) -> str:
    if spec.is_offline_default:
        return (
            "**Offline default model in use.** It is small and was trained only on Fashion-MNIST clothes and "
            "emoji pictures, so it knows those; real photos need a pretrained CLIP: pick *open_clip name + tag* "
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

    # ----------------------------------------------------------------- models
    def classifier(self, spec: ModelChoice) -> Any:
        try:
            return self.zeroshot.get(spec)
        except SnapsightError as e:
            raise UserError(str(e), title="Model not available") from None
        except Exception as e:  # noqa: BLE001 - open_clip/HF raise many kinds; show which model failed
            log.exception("loading %s failed", spec.describe())
            raise UserError(f"Could not load {spec.describe()}: {type(e).__name__}: {e}", title="Model not available") from None

    def preload(self) -> dict:
        """Load the start model now (fail fast before serving); returns its model_info."""
        return dict(getattr(self.zeroshot.get(self.start_spec), "model_info", {}) or {})

    def _run_batch(self, key: Hashable, images: list) -> list:
        spec, labels, templates, top_k, threshold, multi_label = key
        clf = self.zeroshot.get(spec)
        # `labels` is the user's text, so per-label synonyms/prompts ("cat: kitty | a photo of a cat") survive.
        return clf.classify(images, labels, templates=templates, top_k=top_k, threshold=threshold,
                            multi_label=multi_label)

    # -------------------------------------------------------------- handlers
    def _parse_labels(self, text: str | None) -> tuple[str, int]:
        """Validate the labels text; returns (the text, number of labels). Notes become page warnings."""

        try:
            labels, notes = parse_labels(text or "")
        except SnapsightError as e:
            labels, notes = [], [str(e)]
        if not labels:
            raise UserError(
                "No labels: type the labels to choose from, separated by commas or new lines (e.g. cat, dog, pizza).",
                title="Labels needed",
            )
        for note in notes:
            gr.Warning(note)
        return (text or "").strip(), len(labels)

    def _key(self, spec, labels, templates, top_k, threshold, multi_label) -> tuple:
        text, n_labels = labels
        thr = float(threshold) if threshold not in (None, "") and float(threshold) > 0 else None
        k = max(1, min(int(top_k or 5), n_labels))
        return (spec or self.start_spec, text, templates or "default", k, thr, bool(multi_label))

    def classify(self, image, labels_text, templates="default", top_k=5, threshold=0.0, multi_label=False,
                 spec=None):
        """(image, labels) -> Gradio Label payload, plus the top label for the heatmap step."""
        if image is None:
            raise UserError("No image: upload one or pick an example first.", title="Image needed")
        labels = self._parse_labels(labels_text)
        img, _ = _open_upload(image, self.cfg.max_pixels)
        key = self._key(spec, labels, templates, top_k, threshold, multi_label)
        self.classifier(key[0])  # load (or fail with a clear message) before queueing for the batcher
        result = _answer(self.batcher.submit_async(key, img))
        return _label_data(result), (result.labels[0] if result.labels else None)

    def classify_many(self, files, labels_text, templates="default", top_k=5, threshold=0.0, multi_label=False,
                      spec=None):
        """Several images -> table rows (one per image; unreadable files get their reason in the row)."""
        files = [f for f in (files or []) if f is not None]
        if not files:
            raise UserError("No images: upload one or more image files first.", title="Images needed")
        if len(files) > self.cfg.max_images:
            raise UserError(f"{len(files)} images is more than the {self.cfg.max_images} allowed per request.")
        labels = self._parse_labels(labels_text)
        key = self._key(spec, labels, templates, top_k, threshold, multi_label)
        self.classifier(key[0])
        rows: list[list | None] = []
        pending = []
        for f in files:
            try:
                img, name = _open_upload(f, self.cfg.max_pixels)
            except gr.Error as e:
                gr.Warning(e.message)
                rows.append([_payload_path(f)[1], f"(skipped) {e.message}", None, ""])
                continue
            rows.append(None)
            pending.append((len(rows) - 1, name, self.batcher.submit_async(key, img)))
        for i, name, fut in pending:
            rows[i] = _table_row(name, _answer(fut))
        return {"headers": TABLE_HEADERS, "data": rows}

    def explain(self, image, label, templates="default", spec=None, enabled=True):
        """Overlay image for the why-this-label view (None when off or nothing to explain)."""
        if not enabled or image is None or not label:
            return None

        img, _ = _open_upload(image, self.cfg.max_pixels)
        clf = self.classifier(spec or self.start_spec)
        try:
            exp = explain_label(clf.model, clf.preprocess, clf.tokenizer, img, label, prompts=_prompts(templates),
                                samples=self.cfg.explain_samples)
        except Exception as e:  # noqa: BLE001 - the ranking is already shown; a missing heatmap must not hide it
            log.warning("heatmap failed for %s: %s", spec or self.start_spec, e)
            gr.Warning(f"No heatmap for this model ({type(e).__name__}: {e}).")
            return None
        return gr.Image(value=exp.overlay, label=f"Why “{label}”: where the image matches it ({exp.method} saliency)")

    def load_model(self, source, name, pretrained, path):
        """Model picker -> (spec for this session, status line, banner)."""
        if source == SOURCE_OPEN_CLIP:
            if not (name or "").strip():
                raise UserError("Type an open_clip model name, e.g. ViT-B-32.")
            spec = ModelChoice(name.strip(), (pretrained or "").strip() or None)
        elif source == SOURCE_LOCAL:
            if not self.cfg.local_paths_allowed:
                raise UserError("Loading server folders from the page is off for a non-local host; use --model.")
            if not (path or "").strip():
                raise UserError("Type the path of a model folder (open_clip local-dir or Hugging Face CLIP).")
            path = path.strip()
            if detect(path) == "classifier":
                raise UserError(f"{path} is a classifier saved by `snapsight probe`: open it in the Classifier tab.")
            spec = ModelChoice(path)  # open_clip or Hugging Face CLIP folder; the loader tells them apart
        else:
            spec = ModelChoice()
        clf = self.classifier(spec)
        info = dict(getattr(clf, "model_info", {}) or {})
        return spec, model_markdown(spec, info), banner_markdown(spec, info)

    def run_probe(self, path, files, top_k=5):
        """Classifier tab: a `snapsight probe` folder on uploaded images -> (Label of the first, table)."""
        path = (path or "").strip() or (self.cfg.classifier or "")
        if not path:
            raise UserError("Give the folder of a classifier saved by `snapsight probe`.", title="Classifier needed")
        if path != self.cfg.classifier and not self.cfg.local_paths_allowed:
            raise UserError("Loading server folders from the page is off for a non-local host; use --classifier.")
        files = [f for f in (files or []) if f is not None]
        if not files:
            raise UserError("No images: upload one or more image files first.", title="Images needed")
        if len(files) > self.cfg.max_images:
            raise UserError(f"{len(files)} images is more than the {self.cfg.max_images} allowed per request.")
        try:
            if detect(path) != "classifier":
                raise UserError(f"{path} is not a classifier folder saved by `snapsight probe`.")
            clf = self.probes.get(path)
        except SnapsightError as e:
            raise UserError(str(e), title="Classifier not available") from None
        images, names = [], []
        for f in files:
            img, name = _open_upload(f, self.cfg.max_pixels)
            images.append(img)
            names.append(name)
        rankings = clf.predict(images, top_k=max(1, int(top_k or 5)))
        rows = [_table_row(n, r) for n, r in zip(names, rankings)]
        return _label_data(rankings[0]), {"headers": TABLE_HEADERS, "data": rows}

    # ------------------------------------------------------------------ page
    def build(self, start_info: dict | None = None) -> gr.Blocks:
        cfg = self.cfg
        examples = example_files()
        templates = _template_choices()
        with gr.Blocks(title="snapsight demo", analytics_enabled=False) as demo:
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
                            threshold = gr.Slider(0.0, 1.0, value=0.0, step=0.01,
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
        return demo

    def launch(self, demo: gr.Blocks | None = None, block: bool = True, quiet: bool = False):
        """Serve; returns (app, local_url). ``block=False`` returns at once (tests, benchmarks)."""
        cfg = self.cfg
        demo = demo or self.build()
        allowed = [str(EXAMPLES_DIR)] + list(cfg.extra_allowed_paths)
        _, url, _ = demo.launch(
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

