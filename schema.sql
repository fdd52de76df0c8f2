-- The run history (history.py). Every step run is one row of runs; the other tables hold its details.
-- Changing this file means adding a numbered migration in history.py (PRAGMA user_version), and the same change to
-- schema.postgresql.sql with its migration.
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    step TEXT NOT NULL,                 -- ingestion, training, scoring, deployment, fullprocess, ...
    parent_id INTEGER REFERENCES runs(id),  -- the fullprocess run a step ran inside, if any
    started_at TEXT NOT NULL,           -- ISO 8601 UTC
    ended_at TEXT NOT NULL,
    seconds REAL NOT NULL,
    outcome TEXT NOT NULL,              -- ok, failed, skipped, busy, no-new-data, dry-run
    summary TEXT NOT NULL DEFAULT '',   -- the one line the step printed
    details TEXT NOT NULL DEFAULT '{}'  -- the step's full result as JSON
);
CREATE INDEX IF NOT EXISTS runs_step ON runs(step, id);

CREATE TABLE IF NOT EXISTS files (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,               -- ingested or rejected
    rows_read INTEGER,
    rows_added INTEGER,
    reason TEXT
);

CREATE TABLE IF NOT EXISTS scores (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    role TEXT NOT NULL,                 -- trained, deployed, challenger, new-data
    release INTEGER,
    model_sha256 TEXT,
    f1 REAL, precision REAL, recall REAL, accuracy REAL, roc_auc REAL,
    rows INTEGER
);

CREATE TABLE IF NOT EXISTS releases (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    version INTEGER NOT NULL,
    action TEXT NOT NULL,               -- deploy or rollback
    model_sha256 TEXT,
    f1 REAL,
    at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS drift_checks (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    release INTEGER,
    rule TEXT NOT NULL,                 -- the rule applied (after any fallback)
    new_rows INTEGER NOT NULL,
    new_score REAL,
    ci_low REAL,
    ci_high REAL,
    deployed_score REAL,
    threshold REAL,
    verdict TEXT NOT NULL,              -- drift, no-drift, insufficient-data, bootstrap
    reason TEXT NOT NULL,
    data_verdict TEXT,                  -- OK, WARN, DRIFT
    batch_from INTEGER NOT NULL DEFAULT 0,  -- the rows first ingested in store batches after this id ...
    batch_to INTEGER NOT NULL DEFAULT 0,    -- ... up to this id were checked
    unlabelled_rows INTEGER NOT NULL DEFAULT 0,  -- rows without labels among them (monitoring data)
    est_f1 REAL, est_low REAL, est_high REAL,  -- F1 estimated without labels, with its interval
    est_verdict TEXT,                   -- drop, no-drop, insufficient-data
    prediction_verdict TEXT,            -- predicted risk against training's: OK, WARN, DRIFT
    prior_verdict TEXT                  -- exit rate of the labelled rows against training's: OK, WARN, DRIFT
);
CREATE INDEX IF NOT EXISTS drift_checks_release ON drift_checks(release, id);

CREATE TABLE IF NOT EXISTS feature_drift (
    check_id INTEGER NOT NULL REFERENCES drift_checks(id),
    feature TEXT NOT NULL,
    psi REAL, psi_floor REAL, ks REAL, ks_pvalue REAL,
    missing_rate REAL,
    verdict TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feature_drift_check ON feature_drift(check_id);

CREATE TABLE IF NOT EXISTS decisions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    decision TEXT NOT NULL,             -- bootstrap, keep, retrain, deploy, reject-challenger, ...
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_run ON decisions(run_id);

CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,                   -- ISO 8601 UTC, when it was sent
    kind TEXT NOT NULL,                 -- model-drift, data-drift, deploy, challenger-refused, failed, recovered
    target TEXT NOT NULL,               -- which of alerts.urls (a hash of the URL: no secrets in the history)
    delivered INTEGER NOT NULL,         -- 1 sent, 0 the receiver could not be reached (no cooldown then)
    title TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_target ON alerts(target, kind, id);
