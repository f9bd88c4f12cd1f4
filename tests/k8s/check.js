#!/usr/bin/env node
// Validates every document of conf/kubernetes/*.yaml against the Kubernetes
// schema (the kubernetes-models package's validate(): types, required
// fields, enums and formats of the API version the document names), and
// writes the vigil.yaml of every ConfigMap to OUT_DIR/<ConfigMap name>.yaml
// for test_k8s.sh to run vigild --check on.
// Usage: check.js SOURCE_DIR OUT_DIR. Exit 1 with one line per problem.
"use strict";
const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

const [src, out] = process.argv.slice(2);
if (!src || !out) {
  console.error("usage: check.js SOURCE_DIR OUT_DIR");
  process.exit(2);
}
const dir = path.join(src, "conf", "kubernetes");
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();
let problems = 0, docs = 0, configs = 0;
const kinds = {};
const fail = (where, msg) => {
  console.log(`FAIL ${where}: ${msg}`);
  problems++;
};

// The model class of apiVersion/kind: kubernetes-models/<group>/<version>/<Kind>
// (the core group is plain "v1").
function modelOf(apiVersion, kind) {
  try {
    const m = require(`kubernetes-models/${apiVersion}/${kind}`);
    return m[kind] || null;
  } catch (e) {
    return null;
  }
}

if (files.length === 0) fail(dir, "no .yaml files");
for (const f of files) {
  const rel = path.join("conf", "kubernetes", f);
  const parsed = YAML.parseAllDocuments(fs.readFileSync(path.join(dir, f), "utf8"), { prettyErrors: true });
  parsed.forEach((d, i) => {
    const where = `${rel} document ${i + 1}`;
    for (const e of d.errors) fail(where, `YAML: ${e.message}`);
    if (d.errors.length) return;
    const obj = d.toJS();
    if (obj === null || obj === undefined) return; // an empty document (a trailing ---)
    docs++;
    const name = `${obj.kind || "?"} ${(obj.metadata && obj.metadata.name) || "?"}`;
    if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
      return fail(where, "no apiVersion or kind");
    }
    const Model = modelOf(obj.apiVersion, obj.kind);
    if (!Model) return fail(`${where} (${name})`, `no schema for ${obj.apiVersion} ${obj.kind} in kubernetes-models`);
    try {
      new Model(obj).validate();
    } catch (e) {
      const errs = e.errors || e.details || [];
      const lines = Array.isArray(errs) && errs.length
        ? errs.map((x) => `${x.instancePath || "/"} ${x.message || x.keyword}${x.params ? " " + JSON.stringify(x.params) : ""}`)
        : [e.message];
      return fail(`${where} (${obj.apiVersion} ${name})`, lines.join("; "));
    }
    kinds[obj.kind] = (kinds[obj.kind] || 0) + 1;
    if (obj.kind === "ConfigMap" && obj.data && typeof obj.data["vigil.yaml"] === "string") {
      fs.writeFileSync(path.join(out, `${obj.metadata.name}.yaml`), obj.data["vigil.yaml"]);
      configs++;
    }
  });
}
const summary = Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ");
console.log(`${files.length} files, ${docs} documents (${summary}), ${configs} vigil.yaml, ${problems} problems`);
process.exit(problems ? 1 : 0);
