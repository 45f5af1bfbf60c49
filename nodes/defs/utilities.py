"""String utility nodes: concatenate, substring, length, case, trim, replace, contains, compare."""

from __future__ import annotations

from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext


class StringOut(NodeOutputs):
    """The single STRING output of the text nodes here."""

    STRING: str = Output(name="STRING", description="The resulting text.")


class StringConcatenate(Node):
    """Joins two texts."""

    class_type = "StringConcatenate"
    display_name = "Concatenate"
    category = "utils/string"

    class Inputs(NodeInputs):
        string_a: str = Input(multiline=True, description="The first text.")
        string_b: str = Input(multiline=True, description="The text appended.")
        delimiter: str = Input("", multiline=False, description="Put between the two texts.")

    Outputs = StringOut

    def run(self, ctx: RunContext, inputs: Inputs) -> StringOut:
        """a + delimiter + b."""
        return StringOut(STRING=inputs.delimiter.join((inputs.string_a, inputs.string_b)))


class StringSubstring(Node):
    """A slice of a text."""

    class_type = "StringSubstring"
    display_name = "Substring"
    category = "utils/string"

    class Inputs(NodeInputs):
        string: str = Input(multiline=True, description="The text to slice.")
        start: int = Input(description="First character kept (negative counts from the end).")
        end: int = Input(description="Character the slice stops before (negative counts from the end).")

    Outputs = StringOut

    def run(self, ctx: RunContext, inputs: Inputs) -> StringOut:
        """Python slice semantics."""
        return StringOut(STRING=inputs.string[inputs.start : inputs.end])


class StringLength(Node):
    """Counts characters."""

    class_type = "StringLength"
    display_name = "Length"
    category = "utils/string"

    class Inputs(NodeInputs):
        string: str = Input(multiline=True, description="The text to measure.")

    class Outputs(NodeOutputs):
        length: int = Output(name="length", description="Number of characters.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Unicode code points."""
        return self.Outputs(length=len(inputs.string))


class CaseConverter(Node):
    """Changes letter case."""

    class_type = "CaseConverter"
    display_name = "Case Converter"
    category = "utils/string"

    class Inputs(NodeInputs):
        string: str = Input(multiline=True, description="The text to convert.")
        mode: Literal["UPPERCASE", "lowercase", "Capitalize", "Title Case"] = Input(
            "UPPERCASE", description="The case applied."
        )

    Outputs = StringOut

    def run(self, ctx: RunContext, inputs: Inputs) -> StringOut:
        """Python's str case methods."""
        convert = {"UPPERCASE": str.upper, "lowercase": str.lower, "Capitalize": str.capitalize}
        return StringOut(STRING=convert.get(inputs.mode, str.title)(inputs.string))


class StringTrim(Node):
    """Strips surrounding whitespace."""

    class_type = "StringTrim"
    display_name = "Trim"
    category = "utils/string"

    class Inputs(NodeInputs):
        string: str = Input(multiline=True, description="The text to trim.")
        mode: Literal["Both", "Left", "Right"] = Input("Both", description="Which ends are trimmed.")

    Outputs = StringOut

    def run(self, ctx: RunContext, inputs: Inputs) -> StringOut:
        """Whitespace as Python's str.strip sees it."""
        trim = {"Both": str.strip, "Left": str.lstrip, "Right": str.rstrip}[inputs.mode]
        return StringOut(STRING=trim(inputs.string))


class StringReplace(Node):
    """Replaces every occurrence of a text."""

    class_type = "StringReplace"
    display_name = "Replace"
    category = "utils/string"

    class Inputs(NodeInputs):
        string: str = Input(multiline=True, description="The text to edit.")
        find: str = Input(multiline=True, description="The text searched for.")
        replace: str = Input(multiline=True, description="What replaces each match.")

    Outputs = StringOut

    def run(self, ctx: RunContext, inputs: Inputs) -> StringOut:
        """Literal (not regex) replacement of all occurrences."""
        return StringOut(STRING=inputs.string.replace(inputs.find, inputs.replace))


class StringContains(Node):
    """Tests whether a text contains another."""

    class_type = "StringContains"
    display_name = "Contains"
    category = "utils/string"

    class Inputs(NodeInputs):
        string: str = Input(multiline=True, description="The text searched.")
        substring: str = Input(multiline=True, description="The text looked for.")
        case_sensitive: bool = Input(True, description="Whether letter case must match.")

    class Outputs(NodeOutputs):
        contains: bool = Output(name="contains", description="True when found.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Case folding with str.lower when insensitive."""
        text, part = inputs.string, inputs.substring
        if not inputs.case_sensitive:
            text, part = text.lower(), part.lower()
        return self.Outputs(contains=part in text)


class StringCompare(Node):
    """Compares two texts."""

    class_type = "StringCompare"
    display_name = "Compare"
    category = "utils/string"

    class Inputs(NodeInputs):
        string_a: str = Input(multiline=True, description="The text tested.")
        string_b: str = Input(multiline=True, description="The text compared against.")
        mode: Literal["Starts With", "Ends With", "Equal"] = Input(
            "Starts With", description="The comparison."
        )
        case_sensitive: bool = Input(True, description="Whether letter case must match.")

    class Outputs(NodeOutputs):
        BOOLEAN: bool = Output(name="BOOLEAN", description="The comparison's result.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """a starts with / ends with / equals b."""
        first, second = inputs.string_a, inputs.string_b
        if not inputs.case_sensitive:
            first, second = first.lower(), second.lower()
        if inputs.mode == "Equal":
            return self.Outputs(BOOLEAN=first == second)
        test = str.startswith if inputs.mode == "Starts With" else str.endswith
        return self.Outputs(BOOLEAN=test(first, second))


NODES = [
    StringConcatenate,
    StringSubstring,
    StringLength,
    CaseConverter,
    StringTrim,
    StringReplace,
    StringContains,
    StringCompare,
]
