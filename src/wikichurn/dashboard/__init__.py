"""The BI dashboard (Streamlit): at-risk domains, engagement, data quality and the model.

It reads the lake's Delta tables with ``deltalake`` and DuckDB and the registry with ``MlflowClient``;
it never starts Spark. Run it with ``wikichurn dashboard``.
"""

# The last line of every page (with the page script's time): the browser test waits for it.
RENDERED = "Computed on the server in"
