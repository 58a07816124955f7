import pytest

from lit_gpt5.errors import UserError
from lit_gpt5.model.prompts import TEMPLATES, format_prompt


def test_templates_are_data_and_empty_input_uses_the_short_form():
    assert format_prompt("Do it.", "", "alpaca") == TEMPLATES["alpaca_no_input"].format(instruction="Do it.")
    assert "### Input:\nctx" in format_prompt("Do it.", "ctx", "alpaca")
    with pytest.raises(UserError, match="unknown template 'chatml'"):
        format_prompt("x", "", "chatml")
