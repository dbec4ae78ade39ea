"""Not the gridrun package: the root of a gridrun source checkout (the package is the gridrun/ folder in it).

Python imports this file as `gridrun` only when it runs in the folder that holds the checkout (a script
there, `python -c`, a notebook) and the checkout's folder is named gridrun: that folder then comes first
on the module search path and hides the installed package. Without this file it would be imported as an
empty namespace package and fail later, far from the cause (`module 'gridrun' has no attribute
'ls_runs'`); with it, the import stops here and says what happened and what to do. Imported under any
other name (pytest collecting the checkout), it does nothing.
"""

import os as _os

_here = _os.path.dirname(_os.path.abspath(__file__))
if __name__ == "gridrun" and _os.path.isfile(_os.path.join(_here, "gridrun", "__init__.py")):
    raise ImportError(
        f"`import gridrun` found {_here}, the gridrun source checkout, instead of the gridrun package: the "
        f"folder Python runs in, {_os.path.dirname(_here)}, holds the checkout, whose name hides the "
        f"installed package. Run the script from another folder (put it in its own project folder, or in "
        f"{_here}), or rename the checkout's folder"
    )
