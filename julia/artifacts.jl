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
    # honor_overrides = false: Artifacts.load_overrides() caches the first Overrides.toml it reads
    # process-wide, so reading it under our directory would hide the depots' overrides afterwards.
    tree_hash = Base.SHA1(meta["git-tree-sha1"])
    directory = with_artifacts_directory(() -> artifact_path(tree_hash; honor_overrides = false), joinpath(root, "artifacts"))
    path = joinpath(directory, basename(get(meta, "file", filename)))  # the file keeps its base name
    isfile(path) || error("artifact $(repr(name)) is registered but $path is missing; run `hgf artifacts verify`")
    return path
end
