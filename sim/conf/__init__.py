"""nginx.conf, read with crossplane into frozen, typed objects: `config` holds the types, `reader`
loads files and includes, and one builder module per context (main and events, http, server and
location, upstream, stream, zones) fills them in. Errors name the file, line and directive."""
