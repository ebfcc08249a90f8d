"""The Chief-of-Staff: request + files + conversation -> a plan (a `WorkflowSpec` and its inputs)."""

from .staff import ANSWER, ChiefOfStaff, Plan, file_item, files_text, fill_inputs, parse_pairs

__all__ = ["ANSWER", "ChiefOfStaff", "Plan", "file_item", "files_text", "fill_inputs", "parse_pairs"]
