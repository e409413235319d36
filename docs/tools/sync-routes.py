#!/usr/bin/env python3
"""Adds routes that are in daemon/src/api/mod.rs ROUTES but missing from
docs/openapi.json and the docs/API.md route table (never removes or rewrites
existing entries: descriptions written by hand stay). The unit tests in
daemon/src/api/mod.rs check the result; run this after adding routes."""
import json, re, pathlib

root = pathlib.Path(__file__).resolve().parents[2]
src = (root / "daemon/src/api/mod.rs").read_text()
routes = re.findall(r'route!\("(\w+)", "([^"]+)", (\w+), (?:sync|async) [\w:]+, "((?:[^"\\]|\\.)*)"\)', src)
role = {"Public": "public", "Viewer": "viewer", "Operator": "operator", "Admin": "admin",
        "Agent": "agent", "AdminSecret": "admin-secret"}

doc_path = root / "docs/openapi.json"
doc = json.loads(doc_path.read_text())
md_path = root / "docs/API.md"
md = md_path.read_text().split("\n")
last_row = max(i for i, l in enumerate(md) if l.startswith("| `"))
added = []
for method, path, access, summary in routes:
    summary = summary.replace('\\"', '"')
    ops = doc["paths"].setdefault(path, {})
    if method.lower() not in ops:
        tag = path.split("/")[3] if path.startswith("/api/v1/") else path.split("/")[1]
        op = {"summary": summary, "tags": [tag], "x-cairn-role": role[access],
              "responses": {"200": {"description": "OK"}, "400": {"$ref": "#/components/responses/Error"}}}
        params = re.findall(r"\{(\w+)\}", path)
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
        if method in ("POST", "PATCH", "PUT"):
            op["requestBody"] = {"required": method != "POST" or not path.endswith(("/ack", "/unack", "/resolve", "/test")),
                                 "content": {"application/json": {"schema": {"type": "object"}}}}
        ops[method.lower()] = op
        added.append(f"{method} {path}")
    row = f"| `{method} {path}` |"
    if not any(l.startswith(row) for l in md):
        last_row += 1
        md.insert(last_row, f"{row} {role[access]} | {summary} |")
doc_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
md_path.write_text("\n".join(md))
print("added:", *added, sep="\n  ")
