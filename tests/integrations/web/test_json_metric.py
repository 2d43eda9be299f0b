"""The web provider reads one number at a dotted path of a JSON answer."""

from __future__ import annotations

import pytest

from integrations.web.json_metric import WebMetricError, number_at


def test_numbers_at_dotted_paths_through_objects_and_lists() -> None:
    document = {"data": {"error_rate": 0.02, "checks": [{"ok": True}, {"ms": "12.5"}]}}
    assert number_at(document, "data.error_rate") == 0.02
    assert number_at(document, "data.checks.0.ok") == 1.0
    assert number_at(document, "data.checks.1.ms") == 12.5


@pytest.mark.parametrize(("field", "message"), [
    ("data.missing", "no field 'data.missing' (missing at 'missing')"),
    ("data.checks.5", "missing at '5'"),
    ("data.name", "field 'data.name' holds a text: not a number"),
    ("data", "holds an object: not a number"),
])
def test_a_field_that_is_not_a_number_is_an_error_naming_it(field: str, message: str) -> None:
    with pytest.raises(WebMetricError) as error:
        number_at({"data": {"checks": [], "name": "shop"}}, field)
    assert message in str(error.value)
    assert "shop" not in str(error.value)  # what the endpoint answered is never echoed
