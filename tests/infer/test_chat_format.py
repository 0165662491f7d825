"""Transformers-style Jinja chat templates (`llmfs/infer/chat_format.py`) render in the environment transformers
gives them: loop controls, its `tojson`, `strftime_now`; a template that does not parse is a one-line error."""

from __future__ import annotations

import datetime

import pytest

from llmfs.errors import LlmfsError
from llmfs.infer.chat_format import jinja_format
from llmfs.tokenizer.byte import ByteTokenizer

TEMPLATE = ("{%- for m in messages -%}{%- if m.role == 'system' -%}{%- continue -%}{%- endif -%}"
            "{%- if m.role == 'assistant' -%}{% generation %}{{ m.role }}={{ m.content | tojson }};{% endgeneration %}"
            "{%- else -%}{{ m.role }}={{ m.content | tojson }};{%- endif -%}"
            "{%- if loop.index == 3 -%}{%- break -%}{%- endif -%}{%- endfor -%}{{ strftime_now('%Y') }}")
MESSAGES = [{"role": "system", "content": "x"}, {"role": "user", "content": "café <b>"},
            {"role": "assistant", "content": "a & b"}, {"role": "user", "content": "never shown"}]


def render(template: str) -> str:
    tok = ByteTokenizer()
    return tok.decode(jinja_format(tok, template, bos_token=None, eos_token=None, stop_ids=()).render_prompt(MESSAGES))


def test_loop_controls_generation_blocks_tojson_and_strftime_now_as_in_transformers():
    # transformers' tojson keeps non-ASCII and does not HTML-escape (jinja's own writes \u003c and \u0026)
    year = datetime.datetime.now().strftime("%Y")
    assert render(TEMPLATE) == f'user="café <b>";assistant="a & b";{year}'


def test_the_same_text_as_transformers_renders():
    utils = pytest.importorskip("transformers.utils.chat_template_utils")
    if not hasattr(utils, "render_jinja_template"):
        pytest.skip("this transformers has no render_jinja_template")
    rendered, _ = utils.render_jinja_template(conversations=[MESSAGES], chat_template=TEMPLATE)
    assert render(TEMPLATE) == rendered[0]


def test_a_template_that_does_not_parse_is_a_one_line_error():
    with pytest.raises(LlmfsError, match=r"the checkpoint's chat template does not parse \(.*\); fix or replace"):
        render("{% if %}")
