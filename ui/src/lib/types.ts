// The JSON the HTTP API answers with (only the fields the UI reads).
export type RunState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const RUN_STATES: RunState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
export type Role = 'viewer' | 'operator' | 'approver' | 'admin';

export interface WorkflowSummary {
  name: string;
  description: string;
  schedule: string | null;
  stages: string[];
  assets: string[];
  tags: string[];
  source: string;
}

export interface StageInfo {
  name: string;
  kind: string;
  asset: string | null;
  description: string;
  retries: number;
  timeout: number | null;
  tags: string[];
  inputs: string[];
  engine?: string | null;
}

export interface WorkflowDetail {
  workflow: WorkflowSummary;
  stages: StageInfo[];
  edges: [string, string][];
  params_schema: JsonSchema | null;
  max_active_runs: number;
  executor: string | null;
  timezone: string;
  catch_up: string;
  depends_on: string[];
  /** With ?layout=true: each stage's [x, y] in the server's layered drawing. */
  positions?: Record<string, [number, number]>;
  [k: string]: unknown;
}

export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  anyOf?: JsonSchema[];
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  const?: unknown;
  [k: string]: unknown;
}

export interface RunRecord {
  run_id: string;
  workflow: string;
  state: RunState;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
  params: Record<string, unknown>;
  selection: string | null;
  parent_run_id: string | null;
  error: string | null;
  stage_counts: Record<string, number>;
  /** The pipeline version the run ran (null: files no version holds). */
  version?: number | null;
  /** The environment whose deployment it ran (null: the project's files). */
  environment?: string | null;
}

export interface Attempt {
  run_id: string;
  stage: string;
  attempt: number;
  state: string;
  queued_at: number | null;
  started_at: number | null;
  ended_at: number | null;
  error: string | null;
  traceback: string | null;
  asset_key: string | null;
  snapshot_id: number | null;
  reused_from: string | null;
  rows: number | null;
  bytes: number | null;
  /** Seconds spent loading the inputs and committing the snapshot (not in the timeout). */
  load_s?: number | null;
  commit_s?: number | null;
  /** The attempt in a tracing backend, when the server has a trace_url and the run was traced. */
  trace_url?: string | null;
}

export interface RunEvent {
  run_id: string;
  kind: string;
  ts: number;
  stage: string | null;
  attempt: number | null;
  state: string | null;
  data: Record<string, unknown>;
  seq: number;
}

export interface LogLine {
  seq: number;
  stage: string | null;
  attempt: number | null;
  stream: string;
  ts: number;
  line: string;
  level: string | null;
}

export interface AssetSummary {
  key: string;
  latest_snapshot: number | null;
  snapshots: number;
  rows: number | null;
  updated_at: number | null;
  schema: Record<string, string>;
}

export interface Snapshot {
  key: string;
  snapshot: number;
  committed_at: number;
  rows: number | null;
  run_id: string | null;
  stage: string | null;
  attempt: number | null;
  schema: Record<string, string>;
}

export interface Lineage {
  key: string;
  workflow: string | null;
  stage: string | null;
  upstream: string[];
  downstream: string[];
}

export interface Schedule {
  name: string;
  workflow: string;
  cron: string;
  timezone: string;
  paused: boolean;
  paused_at: string | number | null;
  next_tick: string | null;
  last_tick: string | null;
  last_run_id: string | null;
  last_run_state: string | null;
  last_error: string | null;
}

export interface Overview {
  window_s: number;
  buckets: { start: number; counts: Record<string, number> }[];
  running: RunRecord[];
  failing: { workflow: string; stage: string; failures: number; last_run_id: string; last_error: string | null }[];
  longest: { workflow: string; stage: string; run_id: string; attempt: number; duration_s: number }[];
}

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  code?: string;
  hint?: string;
  [k: string]: unknown;
}

// The lifecycle of a workflow: versions, environments, promotions, approvals, audit.
export type Environment = 'dev' | 'qa' | 'uat' | 'prod' | 'retired';
export const ENVIRONMENTS: Environment[] = ['dev', 'qa', 'uat', 'prod'];

export interface VersionView {
  workflow: string;
  version: number;
  hash: string;
  format: number;
  kind: 'folder' | 'python';
  author: string;
  message: string;
  created_at: number;
  /** The furthest environment the version reached. */
  stage: Environment;
  /** Where it is deployed now. */
  environments: Environment[];
  stages: number;
  read_only: boolean;
}
export interface GraphStage {
  name: string;
  kind: string;
  engine: string | null;
  asset: string | null;
  deps: string[];
  config: Record<string, unknown>;
}
export interface VersionDetail {
  version: VersionView;
  files: Record<string, string>;
  graph: { stages: GraphStage[] };
}
export interface FileDiff {
  path: string;
  change: 'added' | 'removed' | 'changed';
  diff: string;
}
export interface StageChange {
  name: string;
  fields: string[];
}
export interface DiffReply {
  workflow: string;
  a: number;
  /** null: the working copy. */
  b: number | null;
  files: FileDiff[];
  stages_added: string[];
  stages_removed: string[];
  stages_changed: StageChange[];
}
export interface DeploymentView {
  workflow: string;
  environment: Environment;
  version: number;
  deployed_at: number;
  deployed_by: string;
}
export interface Decision {
  approver: string;
  decision: 'approve' | 'reject';
  comment: string;
  at: number;
}
export interface ApprovalRequest {
  request_id: string;
  workflow: string;
  version: number;
  environment: Environment;
  requester: string;
  state: 'pending' | 'approved' | 'rejected';
  created_at: number;
  required: number;
  decisions: Decision[];
  decided_at: number | null;
}
export interface AuditEntry {
  seq: number;
  at: number;
  actor: string;
  action: string;
  workflow: string | null;
  version: number | null;
  environment: string | null;
  request_id: string | null;
  detail: Record<string, unknown>;
}
export interface VersionsReply {
  versions: VersionView[];
  deployments: DeploymentView[];
}
export interface VersionReply {
  version: VersionView;
  created: boolean;
}
export interface PromotionReply {
  request: ApprovalRequest | null;
  deployment: DeploymentView | null;
}
export interface SourceReply {
  workflow: string;
  kind: 'folder' | 'python';
  files: Record<string, string>;
  hash: string;
  /** The version with this content, if any. */
  version: number | null;
}
export interface PlanReply {
  stages: string[];
  levels: string[][];
  external: Record<string, string[]>;
  selection: string | null;
  [k: string]: unknown;
}
export interface DraftError {
  code: string;
  message: string;
  hint?: string | null;
  /** The error's fields: `problems` lists each problem of a GraphError. */
  fields?: Record<string, unknown>;
}
export interface DraftReply {
  workflow: string;
  error: DraftError | null;
  plan: PlanReply | null;
  stages: StageInfo[];
  edges: [string, string][];
  params_schema: JsonSchema | null;
}
