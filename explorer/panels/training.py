"""The Training panel: one tab per stage with its settings, start / cancel, progress, live plot, log, and a button
that loads the checkpoint a finished stage wrote into the running app."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from imgui_bundle import icons_fontawesome_4 as fa
from imgui_bundle import imgui, implot

from core.api import DreamExplorerError
from core.metrics_log import metrics_log_path
from explorer.jobs import JobRunner, summarize
from explorer.panels.config_form import config_from_draft, edit_config, fill_loaded_models, has_model_inputs
from explorer.panels.widgets import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PLOT_FLAGS,
    RED,
    caption,
    decimate,
    note,
    plot_limits_for_one_point,
)
from explorer.session import log

if TYPE_CHECKING:
    from explorer.panels.host import PanelHost

STATUS_ICON = {"idle": "", "running": fa.ICON_FA_SPINNER, "done": fa.ICON_FA_CHECK, "cancelled": fa.ICON_FA_BAN,
               "failed": fa.ICON_FA_EXCLAMATION_TRIANGLE}  # fmt: skip
STATUS_COLOR = {"idle": GREY, "running": BLUE, "done": GREEN, "cancelled": ORANGE, "failed": RED}
PLOT_MIN_HEIGHT = 140.0
"""The live plot keeps at least this height (the stage's column scrolls when the panel is smaller)."""


def progress_overlay(job: JobRunner) -> str:
    """The text on a stage's progress bar: percent and steps, or how it ended."""
    p = job.progress
    if job.status == "done":
        return "done"
    if job.status in ("cancelled", "failed"):
        steps = f" at {p.step}/{p.total}" if p is not None else ""
        return f"{job.status}{steps}"
    steps = f"  {p.step}/{p.total}" if p is not None else ""
    return f"{100 * job.fraction:.0f}%{steps}"


def default_metric(keys: list[str]) -> str:
    """The metric a stage's plot starts on: its training loss, return or fitness when reported."""
    for wanted in ("/train/loss", "return_mean", "fitness_mean", "/return", "/frames"):
        for key in keys:
            if key.endswith(wanted):
                return key
    return keys[0]


def start_stage(app: PanelHost, key: str) -> None:
    """Build the stage's config from the edited values and start it (one stage at a time: they share 2 cores)."""
    job = app.jobs[key]
    busy = [j.spec.title for j in app.jobs.values() if j.running]
    if busy:
        app.stage_errors[key] = f"{busy[0]} is running; cancel it or wait (stages share the 2 cores)"
        return
    try:
        config = config_from_draft(job.spec.config_cls, app.drafts[key])
    except (ValueError, TypeError) as exc:
        app.stage_errors[key] = f"invalid settings: {exc}"
        return
    app.stage_errors.pop(key, None)
    app.plot_metric.pop(key, None)
    app.log_shown.discard(key)
    if job.runner == "thread":
        app.session.native_kernels = False  # oneDNN back on before the training thread starts (see Session)
    job.start(config)
    log.info("started %s", job.spec.title)


def logged_run(app: PanelHost, job: JobRunner) -> Path | None:
    """The metrics log that a run with the tab's current settings wrote (:mod:`core.metrics_log`), if any."""
    try:
        path = metrics_log_path(config_from_draft(job.spec.config_cls, app.drafts[job.spec.key]))
    except (DreamExplorerError, TypeError, ValueError):
        return None
    return path if path is not None and path.is_file() else None


def gui_plot(app: PanelHost, job: JobRunner) -> None:
    """The chosen metric over the stage's steps, with a combo of the reported metrics."""
    keys = sorted(job.history.series)
    if not keys:
        caption("The live plot starts with the first progress report.")
        logged = logged_run(app, job)
        if logged is not None and imgui.button(f"Show the curves of the last run ({logged.name})"):
            try:
                job.load_history(logged)
            except DreamExplorerError as exc:
                log.warning("%s", exc)
        return
    metric = app.plot_metric.get(job.spec.key) or default_metric(keys)
    imgui.set_next_item_width(-1)
    if imgui.begin_combo("##metric", metric):
        for k in keys:
            if imgui.selectable(k, k == metric)[0]:
                app.plot_metric[job.spec.key] = k
        imgui.end_combo()
    height = max(PLOT_MIN_HEIGHT, imgui.get_content_region_avail().y - 4)
    steps, values = job.history.arrays(metric)
    if implot.begin_plot(f"##plot_{job.spec.key}", (-1, height), PLOT_FLAGS | implot.Flags_.no_legend):
        one = plot_limits_for_one_point(steps, values)
        if one is None:
            implot.setup_axes("step", "", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
        else:  # auto-fit on one point spans nothing and piles the tick labels on each other
            implot.setup_axes("step", "")
            implot.setup_axes_limits(*one, implot.Cond_.always)
        index, ys = decimate(values, 300)
        xs = np.interp(index, np.arange(len(steps)), steps).astype(np.float32)
        spec = implot.Spec()
        spec.line_color = BLUE
        spec.line_weight = 1.5
        if len(xs) == 1:
            spec.marker = implot.Marker_.circle
        implot.plot_line(metric, xs, ys, spec)
        implot.end_plot()


def gui_log(job: JobRunner) -> None:
    """The stage's recent log lines, following the end."""
    imgui.begin_child(f"log_{job.spec.key}", (0, 0), imgui.ChildFlags_.borders)
    imgui.push_text_wrap_pos(0.0)
    for line in job.log:
        imgui.text_unformatted(line)
    imgui.pop_text_wrap_pos()
    if imgui.get_scroll_y() >= imgui.get_scroll_max_y() - 4:
        imgui.set_scroll_here_y(1.0)
    imgui.end_child()


def gui_stage(app: PanelHost, job: JobRunner) -> None:
    """One stage: settings on the left; buttons, progress, and the live plot or the log on the right."""
    key = job.spec.key
    avail = imgui.get_content_region_avail()
    left = max(260.0, avail.x * 0.42)
    imgui.begin_child(f"settings_{key}", (left, 0))
    note(job.spec.help, GREY)
    imgui.begin_disabled(job.running)
    if has_model_inputs(app.drafts[key]):
        if imgui.small_button(f"{fa.ICON_FA_CUBES} Use the loaded models###use_loaded_{key}"):
            changed = fill_loaded_models(app.drafts[key], app.session.model_paths, replace=True)
            log.info("%s: %s", job.spec.title, f"inputs set to the loaded models ({', '.join(changed)})" if changed
                     else "the inputs already name the loaded models (or none is loaded)")  # fmt: skip
        imgui.set_item_tooltip("Set this stage's vision / memory / controller inputs to the checkpoints the app "
                               "has loaded (Models panel)")  # fmt: skip
    edit_config(job.spec.config_cls, app.drafts[key], label_width=min(130.0, left * 0.42), picker=app.picker)
    imgui.end_disabled()
    imgui.end_child()
    imgui.same_line()
    imgui.begin_child(f"run_{key}", (0, 0))  # scrolls when the plot's minimum height does not fit
    if job.running:
        if imgui.button(f"{fa.ICON_FA_STOP} Cancel###cancel_{key}"):
            job.cancel()
            log.info("cancelling %s...", job.spec.title)
    elif imgui.button(f"{fa.ICON_FA_PLAY} Start###start_{key}"):
        start_stage(app, key)
    imgui.same_line()
    checkpoint = job.checkpoint
    if checkpoint is not None and job.status in ("done", "cancelled"):
        if imgui.button(f"{fa.ICON_FA_DOWNLOAD} Load into app###load_{key}"):
            try:
                app.status_line = app.session.load_checkpoint(checkpoint)
            except Exception as exc:  # a bad file must not take the app down
                app.stage_errors[key] = f"cannot load {checkpoint}: {exc}"
        imgui.set_item_tooltip(f"Load {checkpoint} into the running app")
        imgui.same_line()
    imgui.text_colored(STATUS_COLOR[job.status], f"{STATUS_ICON[job.status]} {job.status}")
    if job.running or job.elapsed:
        imgui.same_line()
        imgui.text_disabled(f"{job.elapsed:.0f} s")
    imgui.progress_bar(job.fraction, (-1, 0), progress_overlay(job))
    if key in app.stage_errors:
        note(app.stage_errors[key], RED)
    if job.error:
        note(f"{job.spec.title} failed: {job.error}", RED)
    elif job.status in ("done", "cancelled") and job.result is not None:
        imgui.text_colored(GREEN if job.status == "done" else ORANGE, summarize(job.result))
    draft = app.drafts[key]
    if key == "vision" and job.status == "done" and draft.get("model") == "dds_vae" and draft.get("phase") == 1:
        if imgui.button(f"{fa.ICON_FA_STEP_FORWARD} Phase 2: train the mini-VAE###phase2"):
            draft["phase"] = 2
            start_stage(app, key)
        imgui.set_item_tooltip("DDS+VAE phase 2 freezes the phase-1 parts and trains the mini-VAE on the same --out")
    if imgui.begin_tab_bar(f"output_{key}"):
        if imgui.begin_tab_item(f"Plot###plot_tab_{key}")[0]:
            gui_plot(app, job)
            imgui.end_tab_item()
        flags = imgui.TabItemFlags_.none
        if job.status == "failed" and key not in app.log_shown:  # show the traceback once, at the failure
            flags = imgui.TabItemFlags_.set_selected
            app.log_shown.add(key)
        if imgui.begin_tab_item(f"Log###log_tab_{key}", None, flags)[0]:
            gui_log(job)
            imgui.end_tab_item()
        imgui.end_tab_bar()
    imgui.end_child()


def gui_training(app: PanelHost) -> None:
    """A tab per stage: collect, vision, encode, memory, controller, evaluate."""
    if not imgui.begin_tab_bar("stages"):
        return
    for spec in app.stages:
        job = app.jobs[spec.key]
        icon = STATUS_ICON[job.status]
        label = f"{spec.title} {icon}" if icon else spec.title
        if job.running:
            label = f"{spec.title} {100 * job.fraction:.0f}%"
        opened, _ = imgui.begin_tab_item(f"{label}###tab_{spec.key}")
        if opened:
            gui_stage(app, job)
            imgui.end_tab_item()
    imgui.end_tab_bar()
