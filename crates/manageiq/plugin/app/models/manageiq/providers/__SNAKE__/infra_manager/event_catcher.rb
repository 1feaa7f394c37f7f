class ManageIQ::Providers::__NAME__::InfraManager::EventCatcher < ManageIQ::Providers::BaseManager::EventCatcher
  def self.settings_name
    :event_catcher___SNAKE__
  end
end
