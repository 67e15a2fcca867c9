"""``klaw mcp``: Klaw's typed commands as an MCP server (Model Context Protocol), for AI
assistants. Needs the ``mcp`` extra.

- :mod:`~klaw.mcp.tools`: the tools, derived from the command table;
- :mod:`~klaw.mcp.server`: the MCP handlers (:class:`~klaw.mcp.server.KlawMcp`), over stdio;
- :mod:`~klaw.mcp.http`: the same over streamable HTTP, behind Klaw's bearer tokens;
- :mod:`~klaw.mcp.audit`: the record of every call.
"""
