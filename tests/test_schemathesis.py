"Property-based API tests: schemathesis generates requests from the service's OpenAPI schema; no 5xx, and every answer conforms to the schema."
import json, os, time
import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis.errors import Unsatisfiable
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient
from mlnb.registry import set_alias
from mlnb.serve import ServeSettings, create_app
from test_serve import KEYS, OPS, build, churn_rows

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("schemathesis")
    registry = base/"registry"
    build(registry, churn_rows(2000, 0), 10)
    set_alias(registry, "churn", "production", "v1", reason="test")
    os.environ["MLNB_SCHEMATHESIS_KEYS"] = json.dumps(KEYS)
    app = create_app(ServeSettings("churn@production", str(registry), keys_env="MLNB_SCHEMATHESIS_KEYS", log_dir=str(base/"log"), max_batch=20))
    with TestClient(app) as client:                  # runs the lifespan: model warmed, prediction log running
        while client.get("/ready").status_code != 200: time.sleep(0.02)
        yield app

def test_api(app):
    "Every operation, hypothesis-generated cases (derandomized), called in-process through the ASGI app with an admin key."
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    cases = {}
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):      # valid bodies, then bodies that break the schema
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
            def check(case):
                label = f"{case.operation.label} {case.meta.generation.mode.value}" if case.meta else case.operation.label
                cases[label] = cases.get(label, 0) + 1
                case.call_and_validate(headers=OPS, checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance])
            try: check()
            except Unsatisfiable: pass                                        # an operation without inputs has no negative cases
    print(cases)
    assert {"POST /predict positive", "POST /predict negative", "POST /explain negative", "POST /admin/reload positive"} <= set(cases)
    assert sum(cases.values()) >= 200, cases
