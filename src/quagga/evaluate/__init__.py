"""Clusters against human labels: agreement scores with intervals, items to re-check, few-label curve, and
every item's label predicted from the labelled ones. Label corrections from the report apply first."""
