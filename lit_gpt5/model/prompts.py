"""Prompt templates: how an instruction (and its optional input) becomes the text the model continues.

Training and inference must format prompts identically, so both import this one small module.
"""

from __future__ import annotations

import string

from lit_gpt5.errors import UserError

# Templates are data: a name -> a format string with {instruction} and {input}. When a record has no input and
# "<name>_no_input" exists, that one is used (Alpaca words its preamble differently without an input).
TEMPLATES: dict[str, str] = {
    "alpaca": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
    ),
    "alpaca_no_input": (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:\n"
    ),
    # Short: for small models and short contexts, where Alpaca's 30-token preamble is a large share of the window.
    "plain": "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
    "plain_no_input": "### Instruction:\n{instruction}\n\n### Response:\n",
    # The record's prompt as it is, for data that is already formatted.
    "none": "{instruction}{input}",
}
FIELDS = ("instruction", "input")


def template_names() -> list[str]:
    return [name for name in TEMPLATES if not name.endswith("_no_input")]


def check_template(template: str) -> str:
    """The format string of ``template`` (a name or a literal format string); a one-line error if it is unusable."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{instruction}" not in template:
        raise UserError(
            f"unknown template {template!r}; use one of {', '.join(template_names())} "
            "or a format string containing {instruction}"
        )
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise UserError(
            f"template {template!r} is not a valid format string ({err}); write braces as {{{{ }}}}"
        ) from None
    unknown = sorted({f for f in fields if f not in FIELDS})
    if unknown:
        raise UserError(
            f"template {template!r} uses unknown field(s) {', '.join('{' + f + '}' for f in unknown)}; "
            "a template may use only {instruction} and {input} (write a literal brace as {{ or }})"
        )
    return template


def format_prompt(instruction: str, input: str = "", template: str = "alpaca") -> str:
    """The prompt text of an instruction (and optional input) in a named template, or a literal format string."""
    fmt = check_template(template)
    if template in TEMPLATES and not input:
        fmt = TEMPLATES.get(f"{template}_no_input", fmt)
    return fmt.format(instruction=instruction, input=input)
