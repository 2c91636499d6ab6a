"""Thin views: parse input, call one service or selector, render. Grouped by page."""
