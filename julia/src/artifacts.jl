# Resolving a registered Hub file with Julia's own Artifacts stdlib, without Python: the store that
# bridge.artifacts maintains is laid out as Julia artifacts (`<root>/Artifacts.toml` binding names to
# git-tree-sha1s, each file at `<root>/artifacts/<git-tree-sha1>/<filename>`).

"""
    store_root()

The artifact store's root, chosen as Python's `bridge.artifacts` chooses it: `\$HGF_BRIDGE_HOME`,
else `\$XDG_CACHE_HOME/hgf-bridge`, else `~/.cache/hgf-bridge`.
"""
function store_root()
    home = get(ENV, "HGF_BRIDGE_HOME", "")
    isempty(home) || return expanduser(home)
    cache = get(ENV, "XDG_CACHE_HOME", "")
    return joinpath(isempty(cache) ? joinpath(homedir(), ".cache") : cache, "hgf-bridge")
end

"""
    artifact_file(repo_id, filename; revision = nothing, root = store_root())

The path of a Hub file registered in the store (`"<repo_id>/<file>"`, or
`"<repo_id>@<revision>/<file>"` for a pinned revision), found with the Artifacts stdlib alone: no
Python, no network. Errors when the name is not registered or its directory is missing.
"""
function artifact_file(repo_id::AbstractString, filename::AbstractString; revision = nothing, root::AbstractString = store_root())
    # As bridge.artifacts.artifact_name: no revision, "" and the default branch use the plain name.
    pinned = revision === nothing || revision in ("", "main") ? repo_id : "$repo_id@$revision"
    name = "$pinned/$filename"
    toml = joinpath(root, "Artifacts.toml")
    meta = artifact_meta(name, toml)
    meta === nothing && error("artifact $(repr(name)) is not registered in $toml; fetch it once with `hgf get $pinned $filename`")
    # The directory is computed, not looked up with Artifacts.with_artifacts_directory: that sets a
    # process-wide override and resets it to `nothing` afterwards, clobbering a caller's own.
    tree_hash = get(meta, "git-tree-sha1", nothing)
    (tree_hash isa AbstractString && occursin(r"^[0-9a-fA-F]{40}$", tree_hash)) ||
        error("artifact $(repr(name)) in $toml has git-tree-sha1 $(repr(tree_hash)), not 40 hexadecimal digits")
    file = get(meta, "file", filename)
    file isa AbstractString || error("artifact $(repr(name)) in $toml has a `file` entry that is not a string: $(repr(file))")
    path = joinpath(root, "artifacts", lowercase(tree_hash), basename(file))  # the file keeps its base name
    isfile(path) || error("artifact $(repr(name)) is registered but $path is missing; run `hgf artifacts verify`")
    return path
end
