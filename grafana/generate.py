#!/usr/bin/env python3
"""Generate the Grafana dashboards of azdo-exporter with grafana-foundation-sdk (Grafana 11 flavour).

    .venv/bin/python grafana/generate.py           # write grafana/dashboards/*.json
    .venv/bin/python grafana/generate.py --check   # exit 1 (with a diff) if a committed file is out of date
    .venv/bin/python grafana/generate.py --config my-mixin.yaml --out DIR   # with your mixin overrides

The job selector and the alert thresholds drawn on panels come from the mixin config
(exporter/metrics/mixin.py, shared with alerts/generate.py), so an override file changes both.

The JSON files are generated: edit this script, run it, and commit both. The tests run `--check`.
Metric names are those of the SPEC (§4); the DORA panels read the recording rules of
alerts/azdo-exporter.recording.yml. Dashboard uids are stable: the alerts' dashboard_url use them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from exporter.metrics import catalogue as m
from exporter.metrics import mixin, monitoring

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
TAGS = ["azdo-exporter", "azure-devops"]
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
DEFAULT_ORGANIZATION_URL = "https://dev.azure.com/contoso"

# Label selectors built from the dashboard variables.
PIPELINE_SEL = 'project=~"$project", pipeline=~"$pipeline"'
BRANCH_SEL = 'project=~"$project", pipeline=~"$pipeline", branch=~"$branch"'
REPO_SEL = 'project=~"$project", repository=~"$repository"'
ENV_SEL = 'project=~"$project", pipeline=~"$pipeline", environment=~"$environment"'
EXPORTER_SEL = 'instance=~"$instance"'

# Adds pipeline_id (for links back to Azure DevOps) to any series with project and pipeline labels.
WITH_PIPELINE_ID = f"* on (project, pipeline) group_left (pipeline_id) {m.PIPELINE_INFO}"
AZDO_BUILD_LINK = "${organization_url}/${__data.fields.project}/_build?definitionId=${__data.fields.pipeline_id}"
DETAIL_LINK = (
    f"{monitoring.PIPELINE_DETAIL.path}?var-project=${{__data.fields.project}}"
    "&var-pipeline=${__data.fields.pipeline}&var-branch=${__data.fields.branch}&${datasource:queryparam}"
)

GREEN, YELLOW, RED = "green", "yellow", "red"
# A panel band that starts at an alert's threshold has the colour of the alert's severity.
SEVERITY_COLORS = {"critical": RED, "warning": YELLOW, "info": "blue"}


# ---------------------------------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------------------------------
def datasource_variable() -> dash.DatasourceVariable:
    return (
        dash.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(models.VariableOption(selected=True, text="Prometheus", value="prometheus"))
    )


def organization_url_variable() -> dash.TextBoxVariable:
    return (
        dash.TextBoxVariable("organization_url")
        .label("Organization URL")
        .description("Azure DevOps organization or collection URL, used by the links back to Azure DevOps.")
        .default_value(DEFAULT_ORGANIZATION_URL)
        .current(models.VariableOption(selected=True, text=DEFAULT_ORGANIZATION_URL, value=DEFAULT_ORGANIZATION_URL))
    )


def query_variable(name: str, label: str, metric_selector: str) -> dash.QueryVariable:
    """A multi-value query variable over one label, with All meaning the regex `.*`."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({metric_selector}, {name})")
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


# ---------------------------------------------------------------------------------------------------
# Panels
# ---------------------------------------------------------------------------------------------------
def query(expr: str, ref_id: str = "A", legend: str = "", instant: bool = False, as_table: bool = False):
    target = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    if instant or as_table:
        target = target.instant()
    else:
        target = target.range()
    if as_table:
        target = target.format(prometheus_models.PromQueryFormat.TABLE)
    return target


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in steps])
    )


def last_value() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def stat_panel(title: str, expr: str, unit: str, description: str, *, steps=None, width: int = 4,
               height: int = 4, legend: str = "", mappings=None) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, legend=legend, instant=True))
        .unit(unit)
        .reduce_options(last_value())
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .color_mode(common_models.BigValueColorMode.VALUE)
        .thresholds(thresholds(*(steps or [(None, GREEN)])))
        .span(width)
        .height(height)
    )
    if mappings:
        panel = panel.mappings(mappings)
    return panel


def multi_stat_panel(title: str, targets: list, unit: str, description: str, *, width: int = 6,
                     height: int = 4) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .reduce_options(last_value())
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .text_mode(common_models.BigValueTextMode.VALUE_AND_NAME)
        .thresholds(thresholds((None, "blue")))
        .span(width)
        .height(height)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def timeseries_panel(title: str, targets: list, unit: str, description: str, *, width: int = 12,
                     height: int = 8, max_value: float | None = None) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(height)
        .legend(common.VizLegendOptions().display_mode(common_models.LegendDisplayMode.TABLE)
                .placement(common_models.LegendPlacement.RIGHT).show_legend(True).calcs(["lastNotNull"]))
    )
    if max_value is not None:
        panel = panel.max(max_value)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def bar_gauge_panel(title: str, expr: str, legend: str, unit: str, description: str, *, steps,
                    width: int = 12, height: int = 8, max_value: float | None = None) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, legend=legend, instant=True))
        .unit(unit)
        .min(0)
        .reduce_options(last_value())
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .thresholds(thresholds(*steps))
        .span(width)
        .height(height)
    )
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def column(name: str, **properties: object) -> tuple[str, list[models.DynamicConfigValue]]:
    """An override for one table column: unit, links, mappings, custom.cellOptions, ...

    Each keyword is a field-config property id as Grafana's registry names it (custom options as
    `custom.<key>`): Grafana silently ignores an override whose id it does not know.
    """
    return name, [models.DynamicConfigValue(id_val=key, value=value) for key, value in properties.items()]


def link(title: str, url: str) -> dict[str, object]:
    return {"title": title, "url": url, "targetBlank": not url.startswith("/d/")}


def table_panel(title: str, targets: list, description: str, *, rename: dict[str, str],
                columns: Sequence[tuple[str, list[models.DynamicConfigValue]]] = (), sort_by: str = "",
                width: int = 24, height: int = 8, hide: tuple[str, ...] = (),
                link_only: tuple[str, ...] = ()) -> table.Panel:
    """A table from instant queries in table format, merged on their labels, with renamed columns.

    `hide` drops columns; `link_only` columns stay in the data (data links read them through
    ${__data.fields.NAME}) but are not shown.
    """
    transformations = []
    if len(targets) > 1:
        transformations.append(models.DataTransformerConfig(id_val="merge", options={}))
    transformations.append(models.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {name: True for name in ("Time", "__name__", "job", "instance", *hide)},
        "renameByName": rename,
    }))
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .transformations(transformations)
        .span(width)
        .height(height)
        .thresholds(thresholds((None, GREEN)))
    )
    if sort_by:
        panel = panel.sort_by([common.TableSortByFieldState().display_name(sort_by).desc(True)])
    for target in targets:
        panel = panel.with_target(target)
    for name, properties in columns:
        panel = panel.override_by_name(name, properties)
    for name in link_only:
        panel = panel.override_by_name(name, [models.DynamicConfigValue(id_val="custom.hidden", value=True)])
    return panel


def alert_step(config: dict[str, Any], alert: str) -> tuple[float, str]:
    """A threshold step at a duration alert's threshold (in seconds), coloured by its severity."""
    settings = config["alerts"][alert]
    return mixin.seconds(settings["threshold"]), SEVERITY_COLORS[settings["severity"]]


def ordered(*steps: tuple[float | None, str]) -> list[tuple[float | None, str]]:
    """Threshold steps in ascending order (the base step, None, first), as Grafana needs them."""
    return sorted(steps, key=lambda step: -float("inf") if step[0] is None else step[0])


def broken_steps(config: dict[str, Any]) -> list[tuple[float | None, str]]:
    """Broken-for bands: from the broken-build warning, from the long-broken default branch."""
    return ordered((None, GREEN), alert_step(config, "AzdoBuildBroken"),
                   alert_step(config, "AzdoDefaultBranchBrokenTooLong"))


def row(title: str) -> dash.Row:
    return dash.Row(title)


BROKEN_MAPPINGS = [models.ValueMap(options={
    "0": models.ValueMappingResult(text="healthy", color=GREEN, index=0),
    "1": models.ValueMappingResult(text="broken", color=RED, index=1),
})]
SUCCESS_MAPPINGS = [models.ValueMap(options={
    "0": models.ValueMappingResult(text="failing", color=RED, index=0),
    "1": models.ValueMappingResult(text="ok", color=GREEN, index=1),
})]
RATIO_STEPS = [(None, RED), (0.8, YELLOW), (0.95, GREEN)]
PIPELINE_COLUMN_LINKS = column("Pipeline", links=[
    link("Open in Azure DevOps", AZDO_BUILD_LINK),
    link("Pipeline detail", DETAIL_LINK),
])


# ---------------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------------
def base_dashboard(board: monitoring.Dashboard, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(board.title)
        .uid(board.uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("1m")
        .time("now-24h", "now")
        .timezone("browser")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .link(dash.DashboardLink("Azure DevOps dashboards").type(models.DashboardLinkType.DASHBOARDS)
              .tags(["azdo-exporter"]).as_dropdown(True).include_vars(True).keep_time(True))
        .with_variable(datasource_variable())
    )


def pipeline_health(config: dict[str, Any]) -> dash.Dashboard:
    sel = BRANCH_SEL
    broken_join = f"{m.PIPELINE_BROKEN_DURATION_SECONDS}{{{sel}}} {WITH_PIPELINE_ID}"
    return (
        base_dashboard(monitoring.PIPELINE_HEALTH,
                       "What is broken now and for how long, success ratio, time to fix, queue time and tests "
                       "of every tracked pipeline and branch. The landing page of azdo-exporter.")
        .with_variable(organization_url_variable())
        .with_variable(query_variable("project", "Project", m.PIPELINE_INFO.name))
        .with_variable(query_variable("pipeline", "Pipeline", f'{m.PIPELINE_INFO}{{project=~"$project"}}'))
        .with_variable(query_variable("branch", "Branch", f"{m.PIPELINE_BROKEN}{{{PIPELINE_SEL}}}"))
        .with_row(row("Now"))
        .with_panel(stat_panel(
            "Broken branches", f"count({m.PIPELINE_BROKEN}{{{sel}}} == 1) or vector(0)", "short",
            "Tracked pipeline branches whose latest breaking-or-fixing run broke them.",
            steps=[(None, GREEN), (1, RED)]))
        .with_panel(stat_panel(
            "Longest broken", f"max({m.PIPELINE_BROKEN_DURATION_SECONDS}{{{sel}}}) or vector(0)", "s",
            "How long the longest-broken branch has been broken (0 when nothing is broken).",
            steps=broken_steps(config)))
        .with_panel(stat_panel(
            "Success ratio (window)",
            f'sum({m.PIPELINE_WINDOW_RUNS}{{{sel}, result="succeeded"}}) '
            f'/ sum({m.PIPELINE_WINDOW_RUNS}{{{sel}, result!="canceled"}})',
            "percentunit", "Succeeded runs over completed runs that were not canceled, over the lookback window.",
            steps=RATIO_STEPS))
        .with_panel(stat_panel(
            "Mean time to fix (window)",
            f"sum({m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gsum}{{{sel}}}) "
            f"/ sum({m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gcount}{{{sel}}})",
            "s", "Mean length of the broken periods that ended in the lookback window.",
            steps=[(None, GREEN), (3600, YELLOW), (14400, RED)]))
        .with_panel(stat_panel(
            "Test pass ratio (latest runs)",
            f'sum({m.PIPELINE_LAST_RUN_TESTS}{{{sel}, outcome="passed"}}) '
            f"/ sum({m.PIPELINE_LAST_RUN_TESTS}{{{sel}}})",
            "percentunit", "Passed tests over all tests of the latest completed run of each branch.",
            steps=RATIO_STEPS))
        .with_panel(stat_panel(
            "Branches without tests", f"count({m.PIPELINE_HAS_TESTS}{{{sel}}} == 0) or vector(0)", "short",
            "Branches whose latest completed run published no test results.",
            steps=[(None, GREEN), (1, YELLOW)]))
        .with_panel(table_panel(
            "Broken now, longest first",
            [query(broken_join, "A", as_table=True),
             query(f"{m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS}{{{sel}}} * 1000 {WITH_PIPELINE_ID}", "B",
                   as_table=True),
             query(f"({m.PIPELINE_CONSECUTIVE_FAILURES}{{{sel}}} {WITH_PIPELINE_ID}) "
                   f"and on (project, pipeline, branch) ({m.PIPELINE_BROKEN}{{{sel}}} == 1)", "C", as_table=True)],
            "Every broken branch, sorted by how long it has been broken. Click a pipeline to open it in Azure "
            "DevOps or in the Pipeline detail dashboard.",
            rename={"project": "Project", "pipeline": "Pipeline", "branch": "Branch",
                    "Value #A": "Broken for", "Value #B": "Broken since", "Value #C": "Failures in a row"},
            columns=[column("Broken for", unit="s"), column("Broken since", unit="dateTimeAsIso"),
                     column("Failures in a row", unit="short"), PIPELINE_COLUMN_LINKS],
            link_only=("pipeline_id",), sort_by="Broken for"))
        .with_row(row("Lookback window"))
        .with_panel(bar_gauge_panel(
            "Success ratio by pipeline and branch",
            f'sort(sum by (project, pipeline, branch) ({m.PIPELINE_WINDOW_RUNS}{{{sel}, result="succeeded"}}) '
            f'/ sum by (project, pipeline, branch) ({m.PIPELINE_WINDOW_RUNS}{{{sel}, result!="canceled"}}))',
            "{{project}} / {{pipeline}} @ {{branch}}", "percentunit",
            "Succeeded over non-canceled completed runs in the lookback window, worst first.",
            steps=RATIO_STEPS, max_value=1, height=10))
        .with_panel(bar_gauge_panel(
            "Mean time to fix by pipeline and branch",
            f"sort_desc(sum by (project, pipeline, branch) ({m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gsum}{{{sel}}}) "
            f"/ (sum by (project, pipeline, branch) ({m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gcount}{{{sel}}}) > 0))",
            "{{project}} / {{pipeline}} @ {{branch}}", "s",
            "Mean length of the broken periods that ended in the lookback window; branches that were never "
            "fixed in the window are not listed.",
            steps=[(None, GREEN), (3600, YELLOW), (14400, RED)], height=10))
        .with_panel(multi_stat_panel(
            "Time to fix quantiles (window)",
            [query(f"histogram_quantile({q}, sum by (le) ({m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.bucket}{{{sel}}}))",
                   ref, legend=f"p{int(q * 100)}", instant=True)
             for ref, q in (("A", 0.5), ("B", 0.9))],
            "s", "Median and 90th percentile of the broken periods that ended in the lookback window, "
            "estimated from the histogram buckets.", width=8))
        .with_panel(multi_stat_panel(
            "Runs now",
            [query(f"sum({m.PIPELINE_RUNS_IN_PROGRESS}{{{PIPELINE_SEL}}})", "A", legend="in progress", instant=True),
             query(f"sum({m.PIPELINE_RUNS_QUEUED}{{{PIPELINE_SEL}}})", "B", legend="queued", instant=True)],
            "short", "Runs of the selected pipelines that are running or waiting for an agent now.", width=8))
        .with_panel(multi_stat_panel(
            "Queue time (p50 / p90, 1h)",
            [query(f"histogram_quantile({q}, sum by (le) (rate({m.PIPELINE_QUEUE_DURATION_SECONDS.bucket}"
                   f"{{{PIPELINE_SEL}}}[1h])))", ref, legend=f"p{int(q * 100)}", instant=True)
             for ref, q in (("A", 0.5), ("B", 0.9))],
            "s", "Queued-to-started time of runs that started in the last hour.", width=8))
        .with_panel(timeseries_panel(
            "Queue time p90 by pipeline",
            [query(f"histogram_quantile(0.9, sum by (project, pipeline, le) "
                   f"(rate({m.PIPELINE_QUEUE_DURATION_SECONDS.bucket}{{{PIPELINE_SEL}}}[$__rate_interval])))",
                   legend="{{project}} / {{pipeline}}")],
            "s", "90th percentile of the time runs waited for an agent.", width=24))
        .with_row(row("Automated tests"))
        .with_panel(bar_gauge_panel(
            "Test pass ratio of the latest run",
            f'sort(sum by (project, pipeline, branch) ({m.PIPELINE_LAST_RUN_TESTS}{{{sel}, outcome="passed"}}) '
            f"/ (sum by (project, pipeline, branch) ({m.PIPELINE_LAST_RUN_TESTS}{{{sel}}}) > 0))",
            "{{project}} / {{pipeline}} @ {{branch}}", "percentunit",
            "Passed tests over all tests of the latest completed run; branches without tests are listed on the right.",
            steps=RATIO_STEPS, max_value=1, height=10))
        .with_panel(table_panel(
            "Branches whose latest run published no tests",
            [query(f"({m.PIPELINE_HAS_TESTS}{{{sel}}} == 0) {WITH_PIPELINE_ID}", as_table=True)],
            "Rule 2: automated acceptance tests run in the pipeline. These branches' latest completed run "
            "published no test results.",
            rename={"project": "Project", "pipeline": "Pipeline", "branch": "Branch"},
            columns=[PIPELINE_COLUMN_LINKS], hide=("Value",), link_only=("pipeline_id",), width=12, height=10))
        .with_row(row("Trends"))
        .with_panel(timeseries_panel(
            "Broken branches by project",
            [query(f"sum by (project) ({m.PIPELINE_BROKEN}{{{sel}}})", legend="{{project}}")],
            "short", "Number of broken branches over time."))
        .with_panel(timeseries_panel(
            "Completed runs per hour by result",
            [query(f"3600 * sum by (result) (rate({m.PIPELINE_RUNS.total}{{{sel}}}[$__rate_interval]))",
                   legend="{{result}}")],
            "short", "Runs completed since the exporter started, as an hourly rate."))
        .with_panel(timeseries_panel(
            "Success ratio (window) by project",
            [query(f'sum by (project) ({m.PIPELINE_WINDOW_RUNS}{{{sel}, result="succeeded"}}) '
                   f'/ sum by (project) ({m.PIPELINE_WINDOW_RUNS}{{{sel}, result!="canceled"}})',
                   legend="{{project}}")],
            "percentunit", "The lookback-window success ratio, as it moves.", max_value=1))
        .with_panel(timeseries_panel(
            "Test results per hour by outcome",
            [query(f"3600 * sum by (outcome) (rate({m.PIPELINE_TESTS.total}{{{sel}}}[$__rate_interval]))",
                   legend="{{outcome}}")],
            "short", "Test results of the runs completed since the exporter started, as an hourly rate."))
        .with_row(row("Agent pools"))
        .with_panel(timeseries_panel(
            "Agents by pool and status",
            [query(f'sum by (pool, status) ({m.AGENT_POOL_AGENTS}{{enabled="true"}})', legend="{{pool}} {{status}}")],
            "short", "Enabled agents, online and offline."))
        .with_panel(timeseries_panel(
            "Jobs by pool and state",
            [query(f"sum by (pool, state) ({m.AGENT_POOL_JOBS})", legend="{{pool}} {{state}}")],
            "short", "Job requests queued (waiting for an agent) and running."))
    )


def pipeline_detail(config: dict[str, Any]) -> dash.Dashboard:
    sel = BRANCH_SEL
    quantiles = (("A", 0.5), ("B", 0.9))
    return (
        base_dashboard(monitoring.PIPELINE_DETAIL,
                       "One pipeline and branch over time: state now, latest run, durations, tests, time to fix.")
        .with_variable(organization_url_variable())
        .with_variable(query_variable("project", "Project", m.PIPELINE_INFO.name))
        .with_variable(query_variable("pipeline", "Pipeline", f'{m.PIPELINE_INFO}{{project=~"$project"}}'))
        .with_variable(query_variable("branch", "Branch", f"{m.PIPELINE_BROKEN}{{{PIPELINE_SEL}}}"))
        .with_row(row("State now"))
        .with_panel(stat_panel(
            "State", f"max({m.PIPELINE_BROKEN}{{{sel}}})", "short",
            "broken if any selected branch is broken.", steps=[(None, GREEN), (1, RED)], mappings=BROKEN_MAPPINGS))
        .with_panel(stat_panel(
            "Broken for", f"max({m.PIPELINE_BROKEN_DURATION_SECONDS}{{{sel}}}) or vector(0)", "s",
            "Now minus broken-since (0 when healthy).", steps=broken_steps(config)))
        .with_panel(stat_panel(
            "Broken since", f"min({m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS}{{{sel}}}) * 1000", "dateTimeAsIso",
            "Finish time of the first breaking run after the last successful one (empty when healthy)."))
        .with_panel(stat_panel(
            "Failures in a row", f"max({m.PIPELINE_CONSECUTIVE_FAILURES}{{{sel}}})", "short",
            "Breaking runs since the last success.", steps=[(None, GREEN), (1, YELLOW), (3, RED)]))
        .with_panel(stat_panel(
            "Latest run finished", f"max({m.PIPELINE_LAST_RUN_FINISHED_TIMESTAMP_SECONDS}{{{sel}}}) * 1000",
            "dateTimeAsIso", "Finish time of the latest completed run."))
        .with_panel(stat_panel(
            "Latest run duration", f"max({m.PIPELINE_LAST_RUN_DURATION_SECONDS}{{{sel}}})", "s",
            "Start-to-finish time of the latest completed run."))
        .with_panel(table_panel(
            "Latest run per branch",
            [query(f"({m.PIPELINE_LAST_RUN_RESULT}{{{sel}}} == 1) {WITH_PIPELINE_ID}", "A", as_table=True),
             query(f"{m.PIPELINE_LAST_RUN_DURATION_SECONDS}{{{sel}}} {WITH_PIPELINE_ID}", "B", as_table=True),
             query(f"{m.PIPELINE_LAST_RUN_FINISHED_TIMESTAMP_SECONDS}{{{sel}}} * 1000 {WITH_PIPELINE_ID}", "C",
                   as_table=True)],
            "Result, duration and finish time of the latest completed run of each selected branch.",
            rename={"project": "Project", "pipeline": "Pipeline", "branch": "Branch", "result": "Result",
                    "Value #B": "Duration", "Value #C": "Finished"},
            columns=[column("Duration", unit="s"), column("Finished", unit="dateTimeAsIso"), PIPELINE_COLUMN_LINKS],
            hide=("Value #A",), link_only=("pipeline_id",)))
        .with_row(row("Over time"))
        .with_panel(timeseries_panel(
            "Broken by branch", [query(f"max by (branch) ({m.PIPELINE_BROKEN}{{{sel}}})", legend="{{branch}}")],
            "short", "1 while broken.", max_value=1))
        .with_panel(timeseries_panel(
            "Consecutive failures by branch",
            [query(f"max by (branch) ({m.PIPELINE_CONSECUTIVE_FAILURES}{{{sel}}})", legend="{{branch}}")],
            "short", "Breaking runs since the last success."))
        .with_panel(timeseries_panel(
            "Run duration",
            [*[query(f"histogram_quantile({q}, sum by (le) (rate({m.PIPELINE_RUN_DURATION_SECONDS.bucket}"
                     f"{{{PIPELINE_SEL}}}[$__rate_interval])))", ref, legend=f"p{int(q * 100)}")
               for ref, q in quantiles],
             query(f"max by (branch) ({m.PIPELINE_LAST_RUN_DURATION_SECONDS}{{{sel}}})", "C",
                   legend="{{branch}} latest run")],
            "s", "p50 and p90: start-to-finish time of the runs completed since the exporter started (all "
            "branches). Latest run: the duration of each selected branch's latest completed run, known from "
            "the exporter's start."))
        .with_panel(timeseries_panel(
            "Queue time",
            [query(f"histogram_quantile({q}, sum by (le) (rate({m.PIPELINE_QUEUE_DURATION_SECONDS.bucket}"
                   f"{{{PIPELINE_SEL}}}[$__rate_interval])))", ref, legend=f"p{int(q * 100)}")
             for ref, q in quantiles],
            "s", "Queued-to-started time of the runs started since the exporter started (all branches)."))
        .with_panel(timeseries_panel(
            "Completed runs per hour by result",
            [query(f"3600 * sum by (result) (rate({m.PIPELINE_RUNS.total}{{{sel}}}[$__rate_interval]))",
                   legend="{{result}}")],
            "short", "Runs completed since the exporter started, as an hourly rate."))
        .with_panel(timeseries_panel(
            "Runs in progress and queued",
            [query(f"sum({m.PIPELINE_RUNS_IN_PROGRESS}{{{PIPELINE_SEL}}})", "A", legend="in progress"),
             query(f"sum({m.PIPELINE_RUNS_QUEUED}{{{PIPELINE_SEL}}})", "B", legend="queued")],
            "short", "Runs of the selected pipelines, all branches."))
        .with_panel(timeseries_panel(
            "Tests of the latest run by outcome",
            [query(f"sum by (branch, outcome) ({m.PIPELINE_LAST_RUN_TESTS}{{{sel}}})",
                   legend="{{branch}} {{outcome}}")],
            "short", "passed, failed and other tests of the latest completed run."))
        .with_panel(timeseries_panel(
            "Time to fix (window)",
            [query(f"sum({m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gsum}{{{sel}}}) "
                   f"/ sum({m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gcount}{{{sel}}})", "A", legend="mean"),
             *[query(f"histogram_quantile({q}, sum by (le) ({m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.bucket}"
                     f"{{{sel}}}))", ref, legend=f"p{int(q * 100)}") for ref, q in (("B", 0.5), ("C", 0.9))]],
            "s", "Broken periods that ended in the lookback window: mean, median and 90th percentile."))
        .with_panel(timeseries_panel(
            "Success ratio (window)",
            [query(f'sum by (branch) ({m.PIPELINE_WINDOW_RUNS}{{{sel}, result="succeeded"}}) '
                   f'/ sum by (branch) ({m.PIPELINE_WINDOW_RUNS}{{{sel}, result!="canceled"}})', legend="{{branch}}")],
            "percentunit", "Succeeded over non-canceled completed runs in the lookback window.", max_value=1))
        .with_panel(timeseries_panel(
            "Runs in the window by result",
            [query(f"sum by (result) ({m.PIPELINE_WINDOW_RUNS}{{{sel}}})", legend="{{result}}")],
            "short", "Completed runs in the lookback window."))
    )


def code_review(config: dict[str, Any]) -> dash.Dashboard:
    sel = REPO_SEL
    coverage_steps = ordered((None, RED), (config["alerts"]["AzdoReviewCoverageLow"]["threshold"], YELLOW),
                             (0.99, GREEN))
    completed = m.PULL_REQUESTS_WINDOW_COMPLETED.name
    by_repo = "project, repository, target_branch"
    return (
        base_dashboard(monitoring.CODE_REVIEW,
                       "Rules 3 to 5: changes reach protected branches through reviewed pull requests, branch "
                       "policies enforce it, and the audit log is reviewed.")
        .with_variable(query_variable("project", "Project", completed))
        .with_variable(query_variable("repository", "Repository", f'{completed}{{project=~"$project"}}'))
        .with_row(row("Lookback window"))
        .with_panel(stat_panel(
            "Review coverage", f'sum({completed}{{{sel}, reviewed="true"}}) / sum({completed}{{{sel}}})',
            "percentunit", "Completed pull requests approved by a reviewer other than their author.",
            steps=coverage_steps))
        .with_panel(stat_panel(
            "Merged without review", f'sum({completed}{{{sel}, reviewed="false"}})', "short",
            "Completed pull requests that no one but their author approved.", steps=[(None, GREEN), (1, RED)]))
        .with_panel(stat_panel(
            "Policy bypasses", f"sum({m.PULL_REQUESTS_WINDOW_BYPASSED}{{{sel}}})", "short",
            "Completed pull requests whose completion bypassed branch policies.", steps=[(None, GREEN), (1, RED)]))
        .with_panel(stat_panel(
            "Branches without reviewer policy",
            f"count({m.BRANCH_POLICY_MIN_REVIEWERS}{{{sel}}} == 0) or vector(0)", "short",
            "Branches with no enabled, blocking minimum-reviewers policy.", steps=[(None, GREEN), (1, RED)]))
        .with_panel(stat_panel(
            "Open pull requests", f"sum({m.PULL_REQUESTS_OPEN}{{{sel}}})", "short",
            "Active pull requests now, drafts included."))
        .with_panel(stat_panel(
            "Audit: policy bypasses",
            f'sum({m.AUDIT_WINDOW_EVENTS}{{action="Git.RefUpdatePoliciesBypassed"}}) or vector(0)', "short",
            "Git.RefUpdatePoliciesBypassed entries in the audit log over the window (organization-wide).",
            steps=[(None, GREEN), (1, RED)]))
        .with_panel(bar_gauge_panel(
            "Review coverage by repository and target branch",
            f"sort(azdo:pull_requests_review_coverage:ratio_window{{{sel}}})",
            "{{repository}} → {{target_branch}}", "percentunit",
            "Recording rule azdo:pull_requests_review_coverage:ratio_window, worst first.",
            steps=coverage_steps, max_value=1, height=10))
        .with_panel(table_panel(
            "Unreviewed and bypassed merges (window)",
            [query(f'sum by ({by_repo}) ({completed}{{{sel}, reviewed="false"}})', "A", as_table=True),
             query(f"sum by ({by_repo}) ({m.PULL_REQUESTS_WINDOW_BYPASSED}{{{sel}}})", "B", as_table=True),
             query(f"sum by ({by_repo}) ({completed}{{{sel}}})", "C", as_table=True)],
            "Per repository and target branch: completed pull requests without review, completed bypassing "
            "policies, and all completed.",
            rename={"project": "Project", "repository": "Repository", "target_branch": "Target branch",
                    "Value #A": "Unreviewed", "Value #B": "Bypassed", "Value #C": "Completed"},
            sort_by="Unreviewed", width=12, height=10))
        .with_row(row("Branch policies"))
        .with_panel(table_panel(
            "Branches without a minimum-reviewers policy",
            [query(f"{m.BRANCH_POLICY_MIN_REVIEWERS}{{{sel}}} == 0", as_table=True)],
            "Rule 4: every change is peer reviewed. These branches accept changes without a required reviewer.",
            rename={"project": "Project", "repository": "Repository", "branch": "Branch"},
            hide=("Value",), width=12))
        .with_panel(table_panel(
            "Policies per branch",
            [query(f"{m.BRANCH_POLICY_ENABLED}{{{sel}}}", as_table=True)],
            "Which known policy types are enabled on each branch.",
            rename={"project": "Project", "repository": "Repository", "branch": "Branch", "policy": "Policy",
                    "Value": "Enabled"},
            columns=[column("Enabled", mappings=[models.ValueMap(options={
                "0": models.ValueMappingResult(text="no", color=RED, index=0),
                "1": models.ValueMappingResult(text="yes", color=GREEN, index=1)}).to_json()],
                **{"custom.cellOptions": {"type": "color-text"}})],
            width=12))
        .with_row(row("Over time"))
        .with_panel(timeseries_panel(
            "Completed pull requests per hour",
            [query(f"3600 * sum by (reviewed) (rate({m.PULL_REQUESTS_COMPLETED.total}{{{sel}}}[$__rate_interval]))",
                   legend="reviewed={{reviewed}}")],
            "short", "Pull requests completed since the exporter started, reviewed or not."))
        .with_panel(timeseries_panel(
            "Policy bypasses (1h)",
            [query(f"sum by (repository) (increase({m.PULL_REQUESTS_BYPASSED.total}{{{sel}}}[1h]))",
                   legend="{{repository}}")],
            "short", "Pull requests completed bypassing branch policies in the previous hour."))
        .with_panel(timeseries_panel(
            "Time to merge",
            [query(f"histogram_quantile({q}, sum by (le) (rate({m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.bucket}"
                   f"{{{sel}}}[$__rate_interval])))", ref, legend=f"p{int(q * 100)}")
             for ref, q in (("A", 0.5), ("B", 0.9))],
            "s", "Created-to-completed time of the pull requests completed since the exporter started."))
        .with_panel(timeseries_panel(
            "Open pull requests by repository",
            [query(f"sum by (repository) ({m.PULL_REQUESTS_OPEN}{{{sel}}})", legend="{{repository}}")],
            "short", "Active pull requests, drafts included."))
        .with_row(row("Audit log"))
        .with_panel(table_panel(
            "Audit events in the window",
            [query(f"sort_desc(sum by (area, category, action) ({m.AUDIT_WINDOW_EVENTS}))", as_table=True)],
            "Rule 5: audit logs are reviewed. Entries of the organization's audit log in the lookback window.",
            rename={"area": "Area", "category": "Category", "action": "Action", "Value": "Events"},
            sort_by="Events", width=12, height=10))
        .with_panel(timeseries_panel(
            "Audit events per hour by action",
            [query(f"3600 * sum by (action) (rate({m.AUDIT_EVENTS.total}[$__rate_interval]))", legend="{{action}}")],
            "short", "Audit log entries seen since the exporter started.", height=10))
    )


def delivery(config: dict[str, Any]) -> dash.Dashboard:
    sel = ENV_SEL
    cfr = config["alerts"]["AzdoChangeFailureRateHigh"]["threshold"]
    dora_env = [
        ("A", "azdo:deployment_frequency:per_day_window", "Deployments per day"),
        ("B", "azdo:deployment_lead_time_seconds:p50_window", "Lead time p50"),
        ("C", "azdo:change_failure:ratio_window", "Change failure rate"),
        ("D", "azdo:deployment_time_to_restore_seconds:avg_window", "Time to restore (mean)"),
    ]
    dora_project = [
        ("A", "azdo_project:production_deployment_frequency:per_day_window", "Deployments per day"),
        ("B", "azdo_project:production_deployment_lead_time_seconds:p50_window", "Lead time p50"),
        ("C", "azdo_project:production_change_failure:ratio_window", "Change failure rate"),
        ("D", "azdo_project:production_deployment_time_to_restore_seconds:avg_window", "Time to restore (mean)"),
    ]
    dora_units = {"Deployments per day": "short", "Lead time p50": "s", "Change failure rate": "percentunit",
                  "Time to restore (mean)": "s"}
    org = "Organization-wide, production environments (recording rule azdo_org:…)."
    return (
        base_dashboard(monitoring.DELIVERY,
                       "Deployments of classic release pipelines and YAML environments, and the DORA four keys.")
        .with_variable(query_variable("project", "Project", m.DEPLOYMENTS_WINDOW.name))
        .with_variable(query_variable("pipeline", "Pipeline", f'{m.DEPLOYMENTS_WINDOW}{{project=~"$project"}}'))
        .with_variable(query_variable("environment", "Environment",
                                      f'{m.DEPLOYMENTS_WINDOW}{{project=~"$project", pipeline=~"$pipeline"}}'))
        .with_row(row("DORA four keys, production"))
        .with_panel(stat_panel(
            "Deployment frequency", "azdo_org:production_deployment_frequency:per_day_window", "short",
            f"Successful production deployments per day over the lookback window. {org}", width=6))
        .with_panel(stat_panel(
            "Lead time for changes (p50)", "azdo_org:production_deployment_lead_time_seconds:p50_window", "s",
            f"Median commit-to-deployed time of successful production deployments. {org}", width=6))
        .with_panel(stat_panel(
            "Change failure rate", "azdo_org:production_change_failure:ratio_window", "percentunit",
            f"Failed over failed plus succeeded production deployments. {org}",
            steps=[(None, GREEN), (cfr / 2, YELLOW), (cfr, RED)], width=6))
        .with_panel(stat_panel(
            "Time to restore (mean)", "azdo_org:production_deployment_time_to_restore_seconds:avg_window", "s",
            f"Mean time from a failed production deployment to the next successful one. {org}", width=6))
        .with_panel(table_panel(
            "DORA by project (production)",
            [query(f'{name}{{project=~"$project"}}', ref, as_table=True) for ref, name, _ in dora_project],
            "The four keys per project, production environments only (recording rules azdo_project:…).",
            rename={"project": "Project", **{f"Value #{ref}": title for ref, _, title in dora_project}},
            columns=[column(title, unit=unit) for title, unit in dora_units.items()], height=6))
        .with_row(row("By pipeline and environment"))
        .with_panel(table_panel(
            "DORA by pipeline and environment",
            [query(f"{name}{{{sel}}}", ref, as_table=True) for ref, name, _ in dora_env],
            "The four keys for every pipeline and environment, both kinds (classic and YAML) together "
            "(recording rules azdo:…).",
            rename={"project": "Project", "pipeline": "Pipeline", "environment": "Environment",
                    **{f"Value #{ref}": title for ref, _, title in dora_env}},
            columns=[column(title, unit=unit) for title, unit in dora_units.items()], height=10))
        .with_panel(table_panel(
            "Deployments in the window by kind and result",
            [query(f"sum by (project, pipeline, environment, kind, result) ({m.DEPLOYMENTS_WINDOW}{{{sel}}})",
                   as_table=True)],
            "Finished deployments in the lookback window; kind is classic (release pipelines) or yaml "
            "(YAML environments).",
            rename={"project": "Project", "pipeline": "Pipeline", "environment": "Environment", "kind": "Kind",
                    "result": "Result", "Value": "Deployments"}, width=12, height=10))
        .with_panel(table_panel(
            "Last successful deployment",
            [query(f"{m.DEPLOYMENT_LAST_SUCCESS_TIMESTAMP_SECONDS}{{{sel}}} * 1000", "A", as_table=True),
             query(f"time() - {m.DEPLOYMENT_LAST_SUCCESS_TIMESTAMP_SECONDS}{{{sel}}}", "B", as_table=True)],
            "When each pipeline last deployed successfully to each environment.",
            rename={"project": "Project", "pipeline": "Pipeline", "environment": "Environment", "kind": "Kind",
                    "Value #A": "Last success", "Value #B": "Age"},
            columns=[column("Last success", unit="dateTimeAsIso"), column("Age", unit="s")],
            sort_by="Age", width=12, height=10))
        .with_row(row("Over time"))
        .with_panel(timeseries_panel(
            "Successful deployments per day by environment and kind",
            [query(f'86400 * sum by (environment, kind) (rate({m.DEPLOYMENTS.total}{{{sel}, result="succeeded"}}'
                   f"[$__rate_interval]))", legend="{{environment}} ({{kind}})")],
            "short", "Deployments finished since the exporter started, as a daily rate."))
        .with_panel(timeseries_panel(
            "Failed deployments per day by environment and kind",
            [query(f'86400 * sum by (environment, kind) (rate({m.DEPLOYMENTS.total}{{{sel}, result="failed"}}'
                   f"[$__rate_interval]))", legend="{{environment}} ({{kind}})")],
            "short", "Failed deployments since the exporter started, as a daily rate."))
        .with_panel(timeseries_panel(
            "Lead time for changes (window)",
            [query(f"histogram_quantile({q}, sum by (environment, le) "
                   f"({m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.bucket}{{{sel}}}))", ref,
                   legend=f"{{{{environment}}}} p{int(q * 100)}") for ref, q in (("A", 0.5), ("B", 0.9))],
            "s", "Commit-to-deployed time of successful production deployments in the lookback window."))
        .with_panel(timeseries_panel(
            "Time to restore by environment (window)",
            [query(f"sum by (environment) ({m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.gsum}{{{sel}}}) "
                   f"/ (sum by (environment) ({m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.gcount}{{{sel}}}) > 0)",
                   legend="{{environment}}")],
            "s", "Mean failed-to-next-success time in production over the lookback window."))
        .with_panel(timeseries_panel(
            "Change failure rate by environment",
            [query(f"azdo:change_failure:ratio_window{{{sel}}}", legend="{{pipeline}} → {{environment}}")],
            "percentunit", "Recording rule azdo:change_failure:ratio_window.", max_value=1))
        .with_panel(timeseries_panel(
            "Lead time for changes (since start)",
            [query(f"histogram_quantile(0.5, sum by (environment, le) "
                   f"(rate({m.DEPLOYMENT_LEAD_TIME_SECONDS.bucket}{{{sel}}}[1d])))", legend="{{environment}} p50")],
            "s", "Median lead time of the production deployments of the previous day, from the counters."))
    )


def exporter(config: dict[str, Any]) -> dash.Dashboard:
    sel = EXPORTER_SEL
    stale = config["alerts"]["AzdoExporterStale"]
    refresh = mixin.seconds(stale["max_interval"])
    return (
        base_dashboard(monitoring.EXPORTER,
                       "Health of azdo-exporter itself: refreshes, staleness, API requests, errors and throttling.")
        .with_variable(query_variable("instance", "Instance", m.EXPORTER_BUILD_INFO.name))
        .with_row(row("Now"))
        .with_panel(stat_panel(
            "Up", f"up{{{config['selectors']['job']}, {sel}}}", "short", "Prometheus can scrape the exporter.",
            steps=[(None, RED), (1, GREEN)], mappings=[models.ValueMap(options={
                "0": models.ValueMappingResult(text="down", color=RED, index=0),
                "1": models.ValueMappingResult(text="up", color=GREEN, index=1)})], legend="{{instance}}"))
        .with_panel(stat_panel(
            "Version", f"{m.EXPORTER_BUILD_INFO}{{{sel}}}", "short", "Exporter and Python versions.",
            legend="{{version}} (Python {{python_version}})")
            .text_mode(common_models.BigValueTextMode.NAME))
        .with_panel(stat_panel(
            "Lookback window", f"max({m.EXPORTER_LOOKBACK_SECONDS}{{{sel}}})", "s",
            "The history window that the *_window_* metrics cover."))
        .with_panel(stat_panel(
            "Collectors failing", f"count({m.EXPORTER_REFRESH_SUCCESS}{{{sel}}} == 0) or vector(0)", "short",
            "Collectors whose last refresh failed (they serve their last good numbers).",
            steps=[(None, GREEN), (1, RED)]))
        .with_panel(stat_panel(
            "Oldest data", f"max(time() - {m.EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS}{{{sel}}})", "s",
            "Age of the oldest successful refresh across collectors.",
            steps=[(None, GREEN), (refresh, YELLOW), (stale["factor"] * refresh, RED)]))
        .with_panel(stat_panel(
            "Throttled (1h)", f"sum(increase({m.EXPORTER_THROTTLED.total}{{{sel}}}[1h]))", "short",
            "Responses from Azure DevOps that asked the exporter to slow down.", steps=[(None, GREEN), (1, YELLOW)]))
        .with_panel(table_panel(
            "Collectors",
            [query(f"{m.EXPORTER_REFRESH_SUCCESS}{{{sel}}}", "A", as_table=True),
             query(f"{m.EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS}{{{sel}}} * 1000", "B", as_table=True),
             query(f"time() - {m.EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS}{{{sel}}}", "C", as_table=True)],
            "Result of the last refresh of each collector, and when the last successful one finished.",
            rename={"collector": "Collector", "Value #A": "Last refresh", "Value #B": "Last success",
                    "Value #C": "Staleness"},
            columns=[column("Last refresh", mappings=[m.to_json() for m in SUCCESS_MAPPINGS],
                            **{"custom.cellOptions": {"type": "color-background"}}),
                     column("Last success", unit="dateTimeAsIso"), column("Staleness", unit="s")],
            height=7))
        .with_row(row("Refreshes"))
        .with_panel(timeseries_panel(
            "Staleness by collector",
            [query(f"time() - {m.EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS}{{{sel}}}",
                   legend="{{collector}}")],
            "s", "Seconds since the last successful refresh of each collector."))
        .with_panel(timeseries_panel(
            "Refresh duration by collector",
            [query(f"sum by (collector) (rate({m.EXPORTER_REFRESH_DURATION_SECONDS.sum}{{{sel}}}[$__rate_interval])) "
                   f"/ sum by (collector) (rate({m.EXPORTER_REFRESH_DURATION_SECONDS.count}{{{sel}}}"
                   f"[$__rate_interval]))", "A", legend="{{collector}} mean"),
             query(f"histogram_quantile(0.9, sum by (collector, le) (rate({m.EXPORTER_REFRESH_DURATION_SECONDS.bucket}"
                   f"{{{sel}}}[$__rate_interval])))", "B", legend="{{collector}} p90")],
            "s", "Wall time of refreshes."))
        .with_panel(timeseries_panel(
            "Refresh success by collector",
            [query(f"{m.EXPORTER_REFRESH_SUCCESS}{{{sel}}}", legend="{{collector}}")],
            "short", "1 when the last refresh succeeded completely.", max_value=1))
        .with_panel(timeseries_panel(
            "Refresh errors per hour by reason",
            [query(f"3600 * sum by (collector, reason) (rate({m.EXPORTER_REFRESH_ERRORS.total}{{{sel}}}"
                   f"[$__rate_interval]))", legend="{{collector}} {{reason}}")],
            "short", "Failed refreshes: auth, throttled, http_5xx, http_4xx, timeout, connection, bad_response."))
        .with_row(row("Azure DevOps API"))
        .with_panel(timeseries_panel(
            "API requests by endpoint and code",
            [query(f"sum by (endpoint, code) (rate({m.EXPORTER_API_REQUESTS.total}{{{sel}}}[$__rate_interval]))",
                   legend="{{endpoint}} {{code}}")],
            "reqps", "Requests sent to Azure DevOps."))
        .with_panel(timeseries_panel(
            "API error ratio by endpoint",
            [query(f'(sum by (endpoint) (rate({m.EXPORTER_API_REQUESTS.total}{{{sel}, code!~"2.."}}'
                   f"[$__rate_interval])) or 0 * sum by (endpoint) (rate({m.EXPORTER_API_REQUESTS.total}{{{sel}}}"
                   f"[$__rate_interval]))) / sum by (endpoint) (rate({m.EXPORTER_API_REQUESTS.total}{{{sel}}}"
                   f"[$__rate_interval]))", legend="{{endpoint}}")],
            "percentunit", "Share of requests answered with a non-2xx code or not answered (timeout, connection).",
            max_value=1))
        .with_panel(timeseries_panel(
            "API request duration p90 by endpoint",
            [query(f"histogram_quantile(0.9, sum by (endpoint, le) (rate("
                   f"{m.EXPORTER_API_REQUEST_DURATION_SECONDS.bucket}{{{sel}}}[$__rate_interval])))",
                   legend="{{endpoint}}")],
            "s", "Latency of Azure DevOps as seen by the exporter."))
        .with_panel(timeseries_panel(
            "Throttling",
            [query(f"sum(rate({m.EXPORTER_THROTTLED.total}{{{sel}}}[$__rate_interval]))", "A",
                   legend="throttled responses per second"),
             query(f"sum(rate({m.EXPORTER_RATE_LIMIT_DELAY_SECONDS.total}{{{sel}}}[$__rate_interval]))", "B",
                   legend="seconds waited per second")],
            "short", "429 / Retry-After answers and the delay they imposed."))
        .with_panel(timeseries_panel(
            "Rate limit remaining by resource",
            [query(f"min by (resource) ({m.EXPORTER_RATE_LIMIT_REMAINING}{{{sel}}})", legend="{{resource}}")],
            "short", "From Azure DevOps' X-RateLimit-Remaining header.", width=24))
    )


DASHBOARDS = {
    "pipeline-health": pipeline_health,
    "pipeline-detail": pipeline_detail,
    "code-review": code_review,
    "delivery": delivery,
    "exporter": exporter,
}


def assign_panel_ids(model: dict) -> None:
    """Number every panel (rows included) 1, 2, 3, ... in order, so ids are unique and stable."""
    next_id = 1
    for panel in model.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []):
            inner["id"] = next_id
            next_id += 1


# Properties the SDK writes on every variable, but which only interval variables have; Grafana 11.6's
# VariableModel (@grafana/schema) does not define them (grafana/schema-check reports them).
INTERVAL_ONLY_VARIABLE_FIELDS = ("auto", "auto_count", "auto_min")


def drop_interval_only_fields(model: dict) -> None:
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") != "interval":
            for key in INTERVAL_ONLY_VARIABLE_FIELDS:
                variable.pop(key, None)


def render(name: str, config: dict[str, Any] | None = None) -> str:
    """The JSON of dashboard `name` for a mixin config (the defaults when None)."""
    built = DASHBOARDS[name](config or mixin.defaults()).build()
    model = json.loads(json.dumps(built, cls=JSONEncoder))
    assign_panel_ids(model)
    drop_interval_only_fields(model)
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard is out of date")
    parser.add_argument("--config", metavar="FILE", help="mixin override file (YAML): the keys to change")
    parser.add_argument("--out", metavar="DIR", type=Path, default=OUT_DIR,
                        help="write the dashboards to DIR instead of grafana/dashboards/")
    args = parser.parse_args(argv)
    try:
        config = mixin.load(args.config)
    except mixin.MixinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir: Path = args.out
    stale = []
    expected = {f"{name}.json" for name in DASHBOARDS}
    for name in DASHBOARDS:
        path = out_dir / f"{name}.json"
        text = render(name, config)
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale.append(path.name)
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       f"{path} (committed)", f"{path} (generated)"))
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    extra = sorted(p.name for p in out_dir.glob("*.json") if p.name not in expected) if out_dir.exists() else []
    if args.check and (stale or extra):
        for name in extra:
            print(f"{out_dir / name}: not generated by grafana/generate.py (remove it)")
        print(f"out of date: {', '.join(stale + extra)}; run .venv/bin/python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
