# Every call into Python goes through `python_module`: the Hub, the artifact store, checkpoint
# formats, tokenizers and the key tables are the Python package's (one implementation of each).
#
# PythonCall rules that apply to every function of this package: call it from Julia's main thread
# (or with the GIL taken, `PythonCall.GIL.@lock`), as PythonCall allows Python code only on the
# thread that holds the GIL; and PythonCall must use a Python that has hgf-bridge installed.

"""
    python_module(name)

The Python module `name` of hgf-bridge (`"bridge.flux_layout"`, ...). When the Python that
PythonCall runs cannot import it (by default CondaPkg builds a private Python without our
package), the error names that Python and the two settings that fix it.
"""
function python_module(name::AbstractString)
    try
        return pyimport(name)
    catch err
        (err isa PyException && pyisinstance(err.v, pybuiltins.ImportError)) || rethrow()
        python = pyconvert(String, pyimport("sys").executable)
        backend = get(ENV, "JULIA_CONDAPKG_BACKEND", "(unset)")
        exe = get(ENV, "JULIA_PYTHONCALL_EXE", "(unset)")
        throw(ErrorException("""
            HGFBridge needs the Python package hgf-bridge, but the Python that PythonCall runs ($python) \
            cannot import $name: $(pyrepr(String, err.v)). Start Julia with \
            JULIA_CONDAPKG_BACKEND=Null (now $backend) and JULIA_PYTHONCALL_EXE=<a python with hgf-bridge \
            installed> (now $exe), e.g. the .venv/bin/python of an hgf-bridge checkout; see docs/julia.md."""))
    end
end

"bridge.flux_layout: the key tables, hyperparameters and array layouts (tested in Python)."
flux_layout() = python_module("bridge.flux_layout")
