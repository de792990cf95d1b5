"""The annotation UI and API (Gradio Blocks) over an :class:`AnnotationLog`.

The state lives on the server, in the log: every browser tab and every API client sees and
changes the same decisions, and a restarted service continues where the log ends.

API (Gradio named endpoints, for ``gradio_client.Client(url).predict(..., api_name=...)``):

- ``/state`` (): the state dict (see :meth:`AnnotationService.state`);
- ``/decide`` (label: str, sample_id: str = ""): record ``label`` for ``sample_id``, or for
  the current sample when it is empty; returns the state with ``applied`` (the entry);
- ``/undo`` (): cancel the last effective decision; returns the state with ``undone``;
- ``/finish`` (): report to Dagster if the task names a target; returns the report status.

Keyboard: a document-level ``keydown`` listener (installed by ``launch(js=...)``) clicks the
button whose shortcut was pressed; shortcuts are shown on the buttons. Gradio has no key
bindings of its own for buttons.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from .log import (
    DELETE,
    SKIP,
    AnnotationLog,
    NextSample,
    Sample,
    Task,
    default_log_path,
    first_undecided,
    progress,
    report_to_dagster,
)

UNDO_KEYS = ("u", "Backspace")
SKIP_KEY = "s"
DELETE_KEYS = ("x", "Delete")
_OWN_KEYS = {"s", "u", "x"}  # letters a task label cannot take as its shortcut

CSS = """
#chara-sample-text { font-size: 2.2em; line-height: 1.35; padding: 0.6em 0.4em; }
#chara-progress { font-size: 1.1em; }
"""


class AnnotationService:
    """The decisions of one task: what to show next, decide, undo, finish.

    Inputs: the task, its log, the task file's path (reported to Dagster, optional), and the
    strategy that picks the next sample (default: the first undecided one).
    All methods are thread-safe: Gradio runs handlers in worker threads.
    """

    def __init__(
        self,
        task: Task,
        log: AnnotationLog,
        task_path: Path | None = None,
        next_sample: NextSample = first_undecided,
    ) -> None:
        self.task = task
        self.log = log
        self.task_path = task_path
        self.next_sample = next_sample
        self._lock = threading.RLock()  # choosing the sample and appending go together

    def current(self) -> Sample | None:
        """The sample to show now, or None when the strategy has nothing left."""
        with self._lock:
            return self.next_sample(self.task, self.log)

    def _sample_dict(self, sample: Sample | None) -> dict[str, Any] | None:
        if sample is None:
            return None
        path = self.task.sample_path(sample)
        return {"id": sample.id, "text": sample.text, "path": str(path) if path else None}

    def state(self) -> dict[str, Any]:
        """The state: ``title``, ``kind``, ``answers`` (allowed labels), ``progress`` (line),
        ``counts``, ``total``, ``decided``, ``left``, ``current`` (``{"id", "text", "path"}``
        or None), ``current_id`` (its id, or ""), ``done`` (nothing left to show), ``last``
        (what UNDO would cancel).

        ``current_id`` is there for scripts: gradio_client turns a dict with a ``path`` into a
        downloaded copy of the file, so for audio and image samples ``current`` reaches them
        as a local path without the id."""
        with self._lock:
            state = progress(self.task, self.log)
            current = self.current()
            return {
                "title": self.task.title,
                "kind": self.task.kind,
                "answers": self.task.answers,
                "progress": state.line(),
                "counts": state.counts,
                "total": state.total,
                "decided": state.decided,
                "left": state.left,
                "current": self._sample_dict(current),
                "current_id": current.id if current is not None else "",
                "done": current is None,
                "last": self.log.last_decision(),
                "log_path": str(self.log.path),
            }

    def decide(self, label: str, sample_id: str | None = None, **extra: Any) -> dict[str, Any]:
        """Record ``label`` for ``sample_id`` (the current sample when None or empty).

        The UI passes the id of the sample it shows, so two quick presses label that sample
        twice rather than the next one unseen. Output: the state plus ``applied``.
        Errors: ``ValueError`` for a label the task does not allow, an unknown sample, or
        no sample left when none is named.
        """
        if label not in self.task.answers:
            raise ValueError(f"label {label!r} is not one of {self.task.answers}")
        with self._lock:
            if sample_id:
                try:
                    sample = self.task.sample(sample_id)
                except KeyError as exc:
                    raise ValueError(str(exc)) from exc
            else:
                sample = self.current()
                if sample is None:
                    raise ValueError("no sample left to decide; UNDO or FINISH")
            applied = self.log.append(sample.id, label, **extra)
            return {**self.state(), "applied": applied}

    def undo(self) -> dict[str, Any]:
        """Cancel the last effective decision; output: the state plus ``undone`` (or None)."""
        with self._lock:
            undone = self.log.undo()
            return {**self.state(), "undone": undone}

    def finish(self) -> dict[str, Any]:
        """Report to Dagster (if configured) and note it in the log.

        Output: ``ok``, ``reported`` (a request reached Dagster and it accepted), ``message``,
        ``status_code``, ``counts``, ``progress``, ``log_path``, ``data_version``.
        """
        with self._lock:
            result = report_to_dagster(self.task, self.log, self.task_path)
            reported = result.ok
            ok = reported or self.task.dagster is None  # nothing to report is not a failure
            state = progress(self.task, self.log)
            self.log.note("finish", reported=reported, message=result.message, counts=state.counts)
            return {
                "ok": ok,
                "reported": reported,
                "message": result.message,
                "status_code": result.status_code,
                "counts": state.counts,
                "progress": state.line(),
                "log_path": str(self.log.path),
                "data_version": result.body.get("data_version"),
            }


# -- keyboard shortcuts ------------------------------------------------------------------


def button_id(answer: str) -> str:
    """The DOM id of an answer's button (``"undo"`` and ``"finish"`` included)."""
    return "chara-btn-" + "".join(c if c.isalnum() else "_" for c in answer)


def shortcuts(task: Task) -> dict[str, list[str]]:
    """Keys for each button: ``{answer: [key, ...]}`` (``KeyboardEvent.key`` values).

    A task label gets its position (``1``..``9``) and its first letter when no other label
    starts with it and it is not taken by SKIP (``s``), UNDO (``u``) or DELETE (``x``).
    FINISH has no key: it reports to Dagster, not something to press by accident.
    """
    firsts = [label[:1].lower() for label in task.labels]
    keys: dict[str, list[str]] = {}
    for i, label in enumerate(task.labels):
        own = []
        if firsts.count(firsts[i]) == 1 and firsts[i].isalnum() and firsts[i] not in _OWN_KEYS:
            own.append(firsts[i])
        if i < 9:
            own.append(str(i + 1))
        keys[label] = own
    if task.allow_skip:
        keys[SKIP] = [SKIP_KEY]
    if task.allow_delete:
        keys[DELETE] = list(DELETE_KEYS)
    keys["undo"] = list(UNDO_KEYS)
    return keys


def shortcut_js(task: Task) -> str:
    """The JavaScript for ``launch(js=...)``: a function Gradio calls once on page load.

    It maps each key to a button id and clicks that button on ``keydown``, unless the focus
    is in a text field, a modifier is held, or the key is auto-repeating (holding ``y`` must
    not accept a run of sentences unseen).
    """
    key_to_id = {k: button_id(answer) for answer, ks in shortcuts(task).items() for k in ks}
    return (
        "() => {\n"
        "  if (window.__charaAnnotationKeys) return;\n"
        f"  const keys = {json.dumps(key_to_id)};\n"
        "  window.__charaAnnotationKeys = keys;\n"
        "  document.addEventListener('keydown', (event) => {\n"
        "    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;\n"
        "    const target = event.target || {};\n"
        "    const tag = (target.tagName || '').toUpperCase();\n"
        "    if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT'"
        " || target.isContentEditable) return;\n"
        "    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;\n"
        "    const id = keys[key];\n"
        "    if (!id) return;\n"
        "    const found = document.getElementById(id);\n"
        "    if (!found) return;\n"
        "    const button = found.tagName === 'BUTTON' ? found : found.querySelector('button');\n"
        "    if (!button || button.disabled) return;\n"
        "    event.preventDefault();\n"
        "    button.click();\n"
        "  });\n"
        "}\n"
    )


def _caption(answer: str, keys: list[str]) -> str:
    """A button's text with its keys, e.g. ``"yes  [y / 1]"``; the service's own in capitals."""
    name = answer.upper() if answer in (SKIP, DELETE) else answer
    return f"{name}  [{' / '.join(keys)}]" if keys else name


# -- the UI ------------------------------------------------------------------------------


def build_app(service: AnnotationService) -> gr.Blocks:
    """The Blocks app: the sample, one button per answer, UNDO, FINISH, progress, the API.

    Output: an unlaunched ``gr.Blocks``; launch it with :func:`launch_kwargs` (CSS, the
    keyboard script and the sample files Gradio may serve).
    """
    task = service.task
    keys = shortcuts(task)

    def view(status: str = "") -> tuple[Any, ...]:
        state = service.state()
        current = state["current"]
        if current is None:
            text = "All samples have an answer. Press FINISH to report, or UNDO."
            sample_id, path = "", None
        else:
            text = current["text"] or ""
            sample_id, path = current["id"], current["path"]
        shown = f"<div id='chara-sample-text'>{html.escape(text)}</div>"
        caption = f"**{state['progress']}**" + (f" · sample `{sample_id}`" if sample_id else "")
        return (
            caption,
            shown,
            path if task.kind == "audio" else None,
            path if task.kind == "image" else None,
            sample_id,
            status,
        )

    with gr.Blocks(title=f"chara annotation: {task.title}") as demo:
        gr.Markdown(f"## {html.escape(task.title)}\n\n{task.instructions}")
        progress_md = gr.Markdown(elem_id="chara-progress")
        text_html = gr.HTML()
        audio = gr.Audio(
            type="filepath",
            interactive=False,
            autoplay=True,
            visible=task.kind == "audio",
            label="sample",
        )
        image = gr.Image(
            type="filepath", interactive=False, visible=task.kind == "image", label="sample"
        )
        shown_id = gr.State("")  # the sample this tab shows: a click labels that one
        with gr.Row():
            answer_buttons = {
                answer: gr.Button(
                    _caption(answer, keys.get(answer, [])),
                    elem_id=button_id(answer),
                    variant="stop" if answer == DELETE else "primary",
                )
                for answer in task.answers
            }
        with gr.Row():
            undo_button = gr.Button(_caption("UNDO", keys["undo"]), elem_id=button_id("undo"))
            finish_button = gr.Button("FINISH", elem_id=button_id("finish"), variant="secondary")
        status_md = gr.Markdown()
        outputs = [progress_md, text_html, audio, image, shown_id, status_md]

        def on_answer(answer: str):
            def handler(sample_id: str) -> tuple[Any, ...]:
                try:
                    service.decide(answer, sample_id or None)
                except ValueError as exc:
                    return view(f"⚠ {exc}")
                return view()

            return handler

        for answer, button in answer_buttons.items():
            # UI events stay off the API: scripts use /decide, which names its label.
            button.click(on_answer(answer), shown_id, outputs, api_visibility="private")

        def on_undo() -> tuple[Any, ...]:
            undone = service.undo()["undone"]
            if undone is None:
                return view("nothing to undo")
            return view(f"undid `{undone['label']}` for sample `{undone['sample_id']}`")

        def on_finish() -> tuple[Any, ...]:
            result = service.finish()
            return view(("✅ " if result["ok"] else "⚠ ") + result["message"])

        undo_button.click(on_undo, None, outputs, api_visibility="private")
        finish_button.click(on_finish, None, outputs, api_visibility="private")
        demo.load(view, None, outputs, api_visibility="private")

        # The API: typed plain functions; gradio_client gets dicts back.
        def state() -> dict:
            """The annotation state: progress, counts, the current sample, the last decision."""
            return service.state()

        def decide(label: str, sample_id: str = "") -> dict:
            """Label the sample `sample_id` (empty: the current one); returns the state."""
            try:
                return service.decide(label, sample_id or None)
            except ValueError as exc:
                raise gr.Error(str(exc), print_exception=False) from exc

        def undo() -> dict:
            """Cancel the last effective decision; returns the state with `undone`."""
            return service.undo()

        def finish() -> dict:
            """Report the result to Dagster (if the task names a target); returns the status."""
            return service.finish()

        for fn in (state, decide, undo, finish):
            gr.api(fn, api_name=fn.__name__)
    return demo


def launch_kwargs(service: AnnotationService) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: CSS, the keyboard script, the sample files.

    Only the task's own files are allowed (not their folders), so the service serves
    nothing else from the disk.
    """
    files = [service.task.sample_path(s) for s in service.task.samples]
    return {
        "css": CSS,
        "js": shortcut_js(service.task),
        "allowed_paths": sorted({str(p) for p in files if p is not None}),
    }


def serve(
    task_path: Path,
    *,
    log_path: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    next_sample: NextSample = first_undecided,
) -> None:
    """Run the service for a task file until the process is stopped (blocks).

    Inputs: the task JSON; the log (default: next to the task, see ``default_log_path``);
    the address (loopback by default: the service has no authentication); the strategy.
    Errors: ``OSError`` (unreadable task, port taken), ``pydantic.ValidationError``.
    """
    task = Task.load(task_path)
    log = AnnotationLog(log_path or default_log_path(task_path))
    service = AnnotationService(task, log, Path(task_path), next_sample)
    demo = build_app(service)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, show_error=True, **launch_kwargs(service))
