class ManageIQ::Providers::__NAME__::InfraManager::Refresher < ManageIQ::Providers::BaseManager::Refresher
end
