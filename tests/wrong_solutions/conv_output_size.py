"""Wrong formulas for conv_output_size."""
from . import case

VISIBLE, HIDDEN = "test_conv_output_size_visible", "test_conv_output_size_hidden"

CASES = [
    case("cos_no_plus_one", "forgets the + 1", loses={VISIBLE, HIDDEN}, conv_output_size="""
        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return (size + 2 * padding - kernel_size) // stride
        """),
    case("cos_padding_once", "counts the padding on one side only", loses={VISIBLE, HIDDEN}, conv_output_size="""
        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return (size + padding - kernel_size) // stride + 1
        """),
    case("cos_ceil", "rounds up instead of down", loses={VISIBLE, HIDDEN}, conv_output_size="""
        import math

        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return math.ceil((size + 2 * padding - kernel_size) / stride) + 1
        """),
    case("cos_ignores_stride", "leaves out the stride", loses={VISIBLE, HIDDEN}, conv_output_size="""
        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return size + 2 * padding - kernel_size + 1
        """),
    case("cos_returns_float", "right value, but a float (passes the visible tests)", loses={HIDDEN},
         conv_output_size="""
        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return float((size + 2 * padding - kernel_size) // stride + 1)
        """),
    case("cos_plus_one_inside", "adds the 1 before dividing (passes the visible tests)", loses={HIDDEN},
         conv_output_size="""
        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return (size + 2 * padding - kernel_size + 1) // stride
        """),
]
