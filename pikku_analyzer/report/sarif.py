"""``--format sarif``: SARIF 2.1.0 with rule metadata for every diagnostic code, so GitHub
code scanning shows the diagnostics on the lines they point at."""

from __future__ import annotations

import json
from typing import Any

from pikku_analyzer.cache import ANALYZER_VERSION
from pikku_analyzer.codes import CODES
from pikku_analyzer.engine import AnalysisResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/pikku/pikku-workflows"


def _rule_name(code: str) -> str:
    return "".join(part.capitalize() for part in code.split("_"))


def sarif_rules() -> list[dict[str, Any]]:
    return [
        {
            "id": code.code,
            "name": _rule_name(code.code),
            "shortDescription": {"text": code.title},
            "fullDescription": {"text": code.help},
            "help": {"text": f"{code.help}\nFix: {code.hint}", "markdown": f"{code.help}\n\n**Fix:** {code.hint}"},
            "defaultConfiguration": {"level": code.severity},
            "properties": {"tags": ["pikku", "workflows"], "problem.severity": code.severity},
        }
        for code in CODES.values()
    ]


def render_sarif(result: AnalysisResult) -> str:
    rules = sarif_rules()
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results: list[dict[str, Any]] = []
    for diag in result.diagnostics:
        message = diag.message if not diag.hint else f"{diag.message} (hint: {diag.hint})"
        results.append(
            {
                "ruleId": diag.code,
                "ruleIndex": index[diag.code],
                "level": diag.severity,
                "message": {"text": message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": diag.file, "uriBaseId": "%SRCROOT%"},
                            "region": {"startLine": diag.line, "startColumn": diag.column},
                        }
                    }
                ],
            }
        )
    root_uri = result.config.root.as_uri().rstrip("/") + "/"
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pikku-analyze",
                        "version": ANALYZER_VERSION,
                        "semanticVersion": ANALYZER_VERSION,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": root_uri}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
