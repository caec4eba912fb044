"""Runtime: runs user TypeScript handlers in sandboxed, warm Deno workers and builds ``ctx``."""
