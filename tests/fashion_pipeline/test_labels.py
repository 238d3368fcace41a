import json

import pytest

from fashion_pipeline.labels import CATEGORY_NAMES, LabelCatalogue, LabelMappingError


def test_thirteen_canonical_categories_by_id():
    assert CATEGORY_NAMES[1] == "short_sleeved_shirt"
    assert CATEGORY_NAMES[13] == "sling_dress"
    assert len(CATEGORY_NAMES) == 13


def test_default_folds_sling_into_vest_for_eleven_labels():
    catalogue = LabelCatalogue()
    assert len(catalogue.labels) == 11
    assert catalogue.label_for("sling") == "vest"
    assert catalogue.label_for("sling_dress") == "vest_dress"
    assert "sling" not in catalogue.class_ids


def test_class_ids_are_fixed_by_the_catalogue_not_the_data():
    a, b = LabelCatalogue(), LabelCatalogue()
    assert a.class_ids == b.class_ids
    assert list(a.class_ids.values()) == list(range(11))


def test_identity_mapping_keeps_thirteen_labels():
    assert len(LabelCatalogue(mapping={}).labels) == 13


def test_null_excludes_a_category():
    catalogue = LabelCatalogue.from_json(json.dumps({"sling": None, "sling_dress": None}))
    assert catalogue.label_for("sling") is None
    assert len(catalogue.labels) == 11


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"slingshot": "vest"}', "unknown categories"),
        ('["vest"]', "JSON object"),
        ("{", "not valid JSON"),
        ('{"vest": ""}', "non-empty string"),
        (json.dumps({name: None for name in CATEGORY_NAMES.values()}), "excludes every category"),
    ],
)
def test_bad_mappings_say_why(text, message):
    with pytest.raises(LabelMappingError, match=message):
        LabelCatalogue.from_json(text, source="labels.json")
