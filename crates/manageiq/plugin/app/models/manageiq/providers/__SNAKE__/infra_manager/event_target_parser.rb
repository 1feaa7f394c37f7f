class ManageIQ::Providers::__NAME__::InfraManager::EventTargetParser
  attr_reader :ems_event

  def initialize(ems_event)
    @ems_event = ems_event
  end

  # The VM the event names; an event without one (a clone whose new id the backend did not
  # report) targets the whole EMS.
  def parse
    target_collection = InventoryRefresh::TargetCollection.new(:manager => ems_event.ext_management_system, :event => ems_event)
    if ems_event.vm_ems_ref.present?
      target_collection.add_target(:association => :vms_and_templates, :manager_ref => {:ems_ref => ems_event.vm_ems_ref})
    else
      target_collection.add_target(:association => :ext_management_systems, :manager_ref => {:id => ems_event.ems_id})
    end
    target_collection.targets
  end
end
