"""Exploratory analysis of the lake: engagement KPIs, data quirks, plots and an HTML report."""
