"""The page parser keeps each customer's text exactly as received, with json.loads's values."""

import json

import pytest

from shared.partner_center.page_json import PageSyntaxError, parse_page

PAGES = [
    '{"totalCount": 2, "items": [{"id": "a", "n": "Zürich \\u00e9\\n"}, {"id": "b", "items": [1]}]}',
    '  {\n "items" :\n [ ] ,"continuationToken":"x/+=,"}\n ',
    '{"items":[{"id":"a"}],"items":[{"id":"b"}]}',
    '{"links": {"next": {"uri": "/v1/customers", "headers": [{"key": "k"}]}}, "items": [1.5e3, null]}',
    "{}",
]


@pytest.mark.parametrize("text", PAGES)
def test_values_are_those_of_json_loads(text):
    page, texts = parse_page(text)
    assert page == json.loads(text)
    if isinstance(page.get("items"), list):
        assert [json.loads(t) for t in texts] == page["items"]


def test_each_item_text_is_the_source_text_on_one_line():
    text = '{"items": [ {"id": "a",\r\n  "name": "Ørsted"} ,{"id":"b"}]}'
    page, texts = parse_page(text)
    assert texts == ['{"id": "a",    "name": "Ørsted"}', '{"id":"b"}']
    assert [json.loads(t) for t in texts] == page["items"]


@pytest.mark.parametrize(
    "text",
    [
        '{"items": [1,]}',
        '{"items": [1] "x": 2}',
        "[1, 2]",
        '{"items": [1]} trailing',
        '{"items": [',
        "",
        '{"a" 1}',
    ],
)
def test_invalid_json_is_refused(text):
    with pytest.raises(PageSyntaxError):
        parse_page(text)
