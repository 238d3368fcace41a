import pytest

from fashion_pipeline.sample import generate


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory):
    """40 good images (every category, JPEG and PNG, far frame headers) plus one of each defect."""
    return generate(tmp_path_factory.mktemp("sample"), images=40, defects=True)
