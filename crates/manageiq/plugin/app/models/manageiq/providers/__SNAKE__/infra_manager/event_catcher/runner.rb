class ManageIQ::Providers::__NAME__::InfraManager::EventCatcher::Runner < ManageIQ::Providers::BaseManager::EventCatcher::Runner
  def monitor_events
    event_monitor_handle.start
    event_monitor_running
    event_monitor_handle.poll { |event| @queue.enq(event) }
  ensure
    stop_event_monitor
  end

  def stop_event_monitor
    @event_monitor_handle&.stop
  ensure
    @event_monitor_handle = nil
  end

  def queue_event(event)
    hash = ManageIQ::Providers::__NAME__::InfraManager::EventParser.event_to_hash(event, @cfg[:ems_id])
    EmsEvent.add_queue("add", @cfg[:ems_id], hash) if hash
  end

  private

  def event_monitor_handle
    @event_monitor_handle ||= ManageIQ::Providers::__NAME__::InfraManager::EventCatcher::Stream.new(@ems)
  end
end
