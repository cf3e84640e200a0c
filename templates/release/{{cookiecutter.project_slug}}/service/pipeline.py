{% set c = cookiecutter._ctx %}"""The notebook's service cells, extracted by nb2prod {{ c.nb2prod_version }}.

Source: {{ c.notebook }} (sha256 {{ c.notebook_sha256 }}).
Setup cells come first, then the contract, pre/postprocessing and fallback cells in notebook
order. Each block names the cell it came from; edit the notebook, not this file.
"""
{%- if c.inferred_contract %}


# ---- contract inferred by nb2prod (the notebook has no contract cell; see contract.inferred.py) ----
{{ c.inferred_contract }}
{%- endif %}
{% for cell in c.cells %}

# ---- cell {{ cell.index }} ({{ cell.role }}) ----
{{ cell.source }}
{% endfor %}
{%- if c.default_predict %}


# ---- nb2prod default: the notebook has no `predict` cell ----
def predict(model, features):
    return model.predict(features)
{% endif %}
{%- if c.default_output_field %}


# ---- nb2prod default: no `postprocess` cell, so each item of `raw` fills Output.{{ c.default_output_field }} ----
def postprocess(raw, inputs):
    # one item per input (a DataFrame's rows); arrays become lists and numpy scalars plain
    # values, so pydantic can validate them
    items = raw.to_numpy() if hasattr(raw, "to_numpy") else raw
    return [Output({{ c.default_output_field }}=v.tolist() if hasattr(v, "tolist") else v) for v in items]
{% endif %}
