"""What users declare: agents, the models they call and the tools they may use.

A user writes an agents file (YAML); the engine and the executors read its
typed, frozen form. Nothing here does I/O or needs an event loop, so the pure
core may import it.

    catalog        AgentCatalog, AgentConfig, ModelConfig, EndpointConfig, ToolConfig,
                   Budget, Prices, AgentsFileError; the built-in ``demo`` agent and ``sim`` model
    loader         load_agents, parse_agents_file: read and check an agents file (YAML)
    model_types    what a model is asked and answers: LLMRequest, LLMResponse, ChatMessage,
                   ToolCall, ToolSpec, ModelError, prompt_hash
    tools          ToolRegistry, run_tool, ToolOutcome: tools as typed functions
    tool_schema    JSON schemas of tool arguments from type hints, and their check
    builtin_tools  ``calculator`` (safe arithmetic) and ``weather`` (deterministic)
    sim_model      SimulatedModel: the deterministic offline model of the demo and tests

Import from the modules, not from this package: the pure core imports
``model_types`` and ``catalog`` under ``TYPE_CHECKING`` or directly, and a
package that re-exported everything would load the tools' runtime (asyncio)
and YAML into every import of the core.
"""
