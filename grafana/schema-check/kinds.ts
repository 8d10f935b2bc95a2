// Panel-kind types for the dashboard schema check (check.mjs), built from Grafana 11.6's published types.
//
// @grafana/schema types a panel's `options`, `fieldConfig.defaults.custom`, override properties and
// `targets` loosely (Record<string, unknown>), because they depend on the panel plugin and the data
// source. This file narrows them for the panel kinds the generator uses, with the per-plugin types the
// package ships (raw/composable/<plugin>/panelcfg): a panel is checked as the union member of its
// `type`, so an unknown option, a misspelt enum value or a wrong nesting is an error.
//
// Deliberate relaxations, each matching what Grafana does when it loads a dashboard:
// - options and custom field config are Partial at their top level: the panel plugin fills in its
//   defaults for what is missing (nested objects, such as reduceOptions or legend, are checked whole);
// - override properties: `id` must name a field-config property Grafana's registry knows (a standard
//   one such as `unit` or `mappings`, or `custom.<key>` of the panel kind's custom field config); an
//   unknown id is silently ignored by Grafana, so it is an error here. Values are checked against
//   that property's type (data links stay `unknown[]`, as in the schema).
// - targets: @grafana/schema 11.6 does not ship the Prometheus query type; PrometheusQuery below
//   mirrors Grafana 11.6's prometheus dataquery (the fields of grafana-foundation-sdk's
//   models.prometheus.Dataquery, generated from the same CUE schema) on top of the schema's DataQuery.

import type * as schema from '@grafana/schema';
import type * as bargauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen.js';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen.js';
import type * as table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen.js';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen.js';

/**
 * A type as it is written in JSON: the generated types use TypeScript string enums (ThresholdsMode,
 * MappingType, BigValueColorMode, ...), to which a string literal is not assignable; in JSON they are
 * their string values. Json<T> replaces every string enum by the union of its values, and keeps
 * everything else (optional properties, excess-property checks, numeric enums) as it is.
 */
export type Json<T> = T extends string
  ? string extends T ? string : `${T}`
  : T extends number | boolean | bigint | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** The dashboard model of Grafana 11.6 (@grafana/schema's Dashboard), as JSON. */
export type DashboardJson = Json<schema.Dashboard>;

export interface PrometheusQuery extends schema.DataQuery {
  datasource?: { type: 'prometheus'; uid: string };
  expr: string;
  instant?: boolean;
  range?: boolean;
  exemplar?: boolean;
  editorMode?: 'code' | 'builder';
  format?: 'time_series' | 'table' | 'heatmap';
  legendFormat?: string;
  intervalFactor?: number;
  interval?: string;
}

type StandardFieldConfig = Omit<schema.FieldConfig, 'custom'>;

/** One override property: a standard field-config property, or custom.<key> of the panel's custom config. */
type OverrideProperty<Custom> =
  | { [K in keyof StandardFieldConfig & string]-?: { id: K; value?: StandardFieldConfig[K] } }[keyof StandardFieldConfig & string]
  | { [K in keyof Custom & string]-?: { id: `custom.${K}`; value?: Custom[K] } }[keyof Custom & string];

interface FieldConfigSourceOf<Custom> {
  defaults: StandardFieldConfig & ([keyof Custom] extends [never] ? { custom?: never } : { custom?: Partial<Custom> });
  overrides: Array<{ matcher: schema.MatcherConfig; properties: Array<OverrideProperty<Custom>> }>;
}

/** Panel kinds without custom field config (stat, bar gauge): `custom` is an error. */
type NoCustomFieldConfig = Record<never, never>;

interface PanelOf<Type extends string, Options, Custom> extends Omit<schema.Panel, 'type' | 'options' | 'fieldConfig' | 'targets' | 'datasource'> {
  type: Type;
  datasource: { type: 'prometheus'; uid: string };
  options?: Partial<Options>;
  fieldConfig?: FieldConfigSourceOf<Custom>;
  targets: PrometheusQuery[];
}

export type StatPanel = PanelOf<'stat', stat.Options, NoCustomFieldConfig>;
export type BarGaugePanel = PanelOf<'bargauge', bargauge.Options, NoCustomFieldConfig>;
export type TimeSeriesPanel = PanelOf<'timeseries', timeseries.Options, timeseries.FieldConfig>;
export type TablePanel = PanelOf<'table', table.Options, table.FieldConfig>;
export interface RowPanel extends Omit<schema.RowPanel, 'panels'> {
  panels: DataPanel[];
}

export type DataPanel = StatPanel | BarGaugePanel | TimeSeriesPanel | TablePanel;
/** The panels the generator may emit; another kind is an error until it is added here. */
export type CheckedPanel = Json<DataPanel | RowPanel>;
