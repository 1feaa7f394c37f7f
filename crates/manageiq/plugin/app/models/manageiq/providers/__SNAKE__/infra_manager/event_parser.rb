module ManageIQ::Providers::__NAME__::InfraManager::EventParser
  def self.event_to_hash(event, ems_id)
    return nil unless event["event_type"]

    {
      :event_type   => event["event_type"],
      :source       => event["source"],
      :ems_ref      => event["ems_ref"],
      :timestamp    => Time.parse(event["timestamp"]).utc,
      :full_data    => event,
      :ems_id       => ems_id,
      :vm_ems_ref   => event["vm_ems_ref"],
      :vm_uid_ems   => event["vm_uid_ems"],
      :vm_name      => event["vm_name"],
      :host_ems_ref => event["host_ems_ref"],
      :message      => event["message"]
    }
  end
end
