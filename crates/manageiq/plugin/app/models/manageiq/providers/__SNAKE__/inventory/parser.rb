class ManageIQ::Providers::__NAME__::Inventory::Parser < ManageIQ::Providers::Inventory::Parser
end
