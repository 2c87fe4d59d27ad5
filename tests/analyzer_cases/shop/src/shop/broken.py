from pikku_typing import wire_workflow

wire_workflow(name="broken"
